"""``ecrec privacy report RUN``: every merchant's privacy spend, recomputed.

Each ε is recomputed from the per-round ``(σ, q, steps)`` the nodes reported,
under the configured accountant and the other one alongside, and checked
against the ε the node's own ledger reported (they must agree).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecrec.errors import EcrecError
from ecrec.privacy.accounting import RoundSpend, epsilon_for_history, epsilon_trajectory
from ecrec.runfolder import atomic_write_bytes, atomic_write_json

REPORT_JSON = "privacy_report.json"
REPORT_MD = "privacy_report.md"
REPORT_PNG = "privacy_report.png"
MAX_PROJECTED_ROUNDS = 1000


def read_privacy(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "privacy.json"
    if not path.exists():
        raise EcrecError(f"{path}: not found (is {run_dir} a run folder?)")
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise EcrecError(f"{path}: invalid JSON: {err.msg} (line {err.lineno})") from None


def _spend(row: dict[str, Any]) -> RoundSpend | None:
    if row.get("declined") or not row.get("steps"):
        return None
    return RoundSpend(
        noise_multiplier=float(row["noise_multiplier"]),
        sample_rate=float(row["sample_rate"]),
        steps=int(row["steps"]),
    )


def rounds_until_exhausted(
    history: list[RoundSpend], last: RoundSpend, *, budget: float, delta: float, accountant: str
) -> int:
    """More rounds like the last one that still fit the budget (capped)."""
    low, high = 0, 1

    # Exponential then binary search over the count of extra rounds (ε is monotone).
    def fits(extra: int) -> bool:
        total = epsilon_for_history(
            [*history, RoundSpend(last.noise_multiplier, last.sample_rate, last.steps * extra)]
            if extra
            else history,
            delta=delta,
            accountant=accountant,  # type: ignore[arg-type]
        )
        return total <= budget

    if not fits(1):
        return 0
    while high < MAX_PROJECTED_ROUNDS and fits(high * 2):
        high *= 2
    low, high = high, min(high * 2, MAX_PROJECTED_ROUNDS)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def build_privacy_report(
    run_dir: Path, *, on_merchant: Callable[[str], None] | None = None
) -> dict[str, Any]:
    privacy = read_privacy(run_dir)
    accountant = privacy.get("accountant", "rdp")
    other = "prv" if accountant == "rdp" else "rdp"
    delta = float(privacy["delta"])
    merchants: dict[str, Any] = {}
    for merchant, info in sorted(privacy.get("merchants", {}).items()):
        if on_merchant is not None:
            on_merchant(merchant)
        rows = info.get("rounds", [])
        spends = [_spend(r) for r in rows]
        history = [s for s in spends if s is not None]
        primary = epsilon_trajectory(history, delta=delta, accountant=accountant)
        secondary = epsilon_trajectory(history, delta=delta, accountant=other)
        out_rows, index = [], 0
        mismatches = []
        for row, spend in zip(rows, spends, strict=True):
            if spend is not None:
                eps, eps_other = primary[index], secondary[index]
                index += 1
            else:
                eps = primary[index - 1] if index else 0.0
                eps_other = secondary[index - 1] if index else 0.0
            reported = row.get("epsilon")
            if reported is not None and abs(reported - eps) > 1e-9 * max(1.0, eps):
                mismatches.append(row["round"])
            out_rows.append(
                {
                    "round": row["round"],
                    "epsilon": eps,
                    "epsilon_other": eps_other,
                    "epsilon_reported": reported,
                    "steps": row.get("steps", 0),
                    "noise_multiplier": row.get("noise_multiplier"),
                    "sample_rate": row.get("sample_rate"),
                    "declined": bool(row.get("declined")),
                }
            )
        budget = float(info.get("budget_epsilon") or 0.0)
        spent = primary[-1] if primary else 0.0
        projected = (
            rounds_until_exhausted(
                history, history[-1], budget=budget, delta=delta, accountant=accountant
            )
            if history and budget
            else None
        )
        merchants[merchant] = {
            "budget_epsilon": budget,
            "delta": delta,
            "epsilon_spent": spent,
            "epsilon_spent_other": secondary[-1] if secondary else 0.0,
            "remaining_epsilon": max(0.0, budget - spent),
            "projected_rounds_to_exhaustion": projected,
            "declined_rounds": info.get("declined_rounds", []),
            "consistent_with_ledger": not mismatches,
            "mismatched_rounds": mismatches,
            "rounds": out_rows,
        }
    return {
        "run": str(run_dir),
        "accountant": accountant,
        "other_accountant": other,
        "delta": delta,
        "merchants": merchants,
    }


def to_markdown(report: dict[str, Any]) -> str:
    acc, other = report["accountant"], report["other_accountant"]
    lines = [
        f"# Privacy report: {report['run']}",
        "",
        f"Accountant: **{acc}** (with {other} alongside), δ = {report['delta']:g}.",
        "",
        f"| merchant | budget ε | spent ε ({acc}) | spent ε ({other}) | remaining | "
        "rounds left at this rate | declined rounds | ledger agrees |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for merchant, info in report["merchants"].items():
        projected = info["projected_rounds_to_exhaustion"]
        lines.append(
            f"| {merchant} | {info['budget_epsilon']:.3f} | {info['epsilon_spent']:.4f} | "
            f"{info['epsilon_spent_other']:.4f} | {info['remaining_epsilon']:.4f} | "
            f"{'-' if projected is None else projected} | "
            f"{', '.join(map(str, info['declined_rounds'])) or '-'} | "
            f"{'yes' if info['consistent_with_ledger'] else 'NO'} |"
        )
    for merchant, info in report["merchants"].items():
        lines += [
            "",
            f"## {merchant}",
            "",
            f"| round | ε ({acc}) | ε ({other}) | steps | σ | q | declined |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in info["rounds"]:
            sigma = row["noise_multiplier"]
            rate = row["sample_rate"]
            lines.append(
                f"| {row['round']} | {row['epsilon']:.4f} | {row['epsilon_other']:.4f} | "
                f"{row['steps']} | {'-' if sigma is None else f'{sigma:.4f}'} | "
                f"{'-' if rate is None else f'{rate:.4f}'} | {'yes' if row['declined'] else ''} |"
            )
    return "\n".join(lines) + "\n"


def write_privacy_report(
    run_dir: Path, *, on_merchant: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], list[Path]]:
    from ecrec.report.plots import privacy_curves

    report = build_privacy_report(run_dir, on_merchant=on_merchant)
    paths = [run_dir / REPORT_JSON, run_dir / REPORT_MD, run_dir / REPORT_PNG]
    atomic_write_json(paths[0], report)
    atomic_write_bytes(paths[1], to_markdown(report).encode("utf-8"))
    atomic_write_bytes(
        paths[2], privacy_curves(report["merchants"], accountant=report["accountant"])
    )
    return report, paths
