"""``ecrec privacy report RUN``: every merchant's privacy spend, from the merchant's side.

The server only learns what each node's policy discloses (by default: trained or
declined, and why a round was declined), so the spend itself is reported from
each merchant's own ledger: every ε recomputed from the ledger's per-round
``(σ, q, steps)`` under the ledger's accountant and a cross-check accountant, and
checked against the ε the ledger recorded and any ε the node disclosed to the
server. A simulation's run folder holds every merchant's node state
(``nodes.toml``), so its report covers all of them; a deployment server's report
shows what the nodes disclosed, and each merchant runs ``ecrec privacy show`` on
its own ledger. Every ε is printed with its accountant, δ and privacy unit.
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
NOT_PRIVATE = "NOT PRIVATE: this run trained with train.dp = false; no DP guarantee holds"


def cross_check_accountant(accountant: str) -> str:
    """The accountant shown beside the ledger's own (an independent analysis)."""
    from ecrec.privacy.accounting import ACCOUNTANTS

    return next(a for a in ("rdp", "pld", "prv") if a != accountant and a in ACCOUNTANTS)


def read_privacy(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "privacy.json"
    if not path.exists():
        raise EcrecError(f"{path}: not found (is {run_dir} a run folder?)")
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise EcrecError(f"{path}: invalid JSON: {err.msg} (line {err.lineno})") from None


def rounds_until_exhausted(
    history: list[RoundSpend], last: RoundSpend, *, budget: float, delta: float, accountant: str
) -> int:
    """More rounds like the last one that still fit the budget (capped).

    ε is monotone in the number of rounds, so this is a search; it starts from the RDP
    answer (fast, and never more rounds than a tighter accountant allows) and only then
    evaluates the ledger's own accountant, which keeps PLD evaluations few.
    """

    def fits(extra: int, under: str = accountant) -> bool:
        total = epsilon_for_history(
            [*history, RoundSpend(last.noise_multiplier, last.sample_rate, last.steps * extra)]
            if extra
            else history,
            delta=delta,
            accountant=under,  # type: ignore[arg-type]
        )
        return total <= budget

    def largest(check: Callable[[int], bool], start: int) -> int:
        """The largest n >= start with check(n), given check(start) holds."""
        step = 1
        low, high = start, start + 1
        while high <= MAX_PROJECTED_ROUNDS and check(high):
            low, step = high, step * 2
            high = low + step
        high = min(high, MAX_PROJECTED_ROUNDS + 1)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if check(middle) else (low, middle)
        return min(low, MAX_PROJECTED_ROUNDS)

    if not fits(1):
        return 0
    start = 1
    if accountant != "rdp" and fits(1, "rdp"):
        start = largest(lambda n: fits(n, "rdp"), 1)  # RDP ≥ PLD: these rounds fit too
    return largest(fits, start)


def ledger_report(ledger: Any) -> dict[str, Any]:
    """One merchant's spend from its own ledger, recomputed and cross-checked."""
    accountant = ledger.accountant
    other = cross_check_accountant(accountant)
    history = ledger.history
    primary = epsilon_trajectory(history, delta=ledger.delta, accountant=accountant)
    secondary = epsilon_trajectory(history, delta=ledger.delta, accountant=other)
    rows, mismatched = [], []
    for entry, eps, eps_other in zip(ledger.entries, primary, secondary, strict=True):
        if abs(float(entry["epsilon_after"]) - eps) > 1e-9 * max(1.0, eps):
            mismatched.append(entry["round"])
        rows.append(
            {
                "round": entry["round"],
                "epsilon": eps,
                "epsilon_other": eps_other,
                "epsilon_recorded": entry["epsilon_after"],
                "steps": entry["steps"],
                "noise_multiplier": entry["noise_multiplier"],
                "sample_rate": entry["sample_rate"],
            }
        )
    spent = primary[-1] if primary else 0.0
    budget = ledger.budget_epsilon
    projected = (
        rounds_until_exhausted(
            history, history[-1], budget=budget, delta=ledger.delta, accountant=accountant
        )
        if history
        else None
    )
    return {
        "accountant": accountant,
        "other_accountant": other,
        "delta": ledger.delta,
        "unit": ledger.unit,
        "budget_epsilon": budget,
        "epsilon_spent": spent,
        "epsilon_spent_other": secondary[-1] if secondary else 0.0,
        "remaining_epsilon": max(0.0, budget - spent),
        "projected_rounds_to_exhaustion": projected,
        "consistent_with_ledger": not mismatched,
        "mismatched_rounds": mismatched,
        "rounds": rows,
    }


def _local_ledgers(run_dir: Path) -> dict[str, Any]:
    """The merchants' ledgers a simulation's run folder holds (none for a deployment)."""
    from ecrec.privacy.ledger import PrivacyLedger
    from ecrec.simulation import NODES_FILE, simulated_nodes

    nodes_file = run_dir / NODES_FILE
    if not nodes_file.exists():
        return {}
    out = {}
    for node in simulated_nodes(nodes_file):
        ledger = PrivacyLedger.load(
            node.ledger_path, key_file=node.key_file, anchor_path=node.anchor_path
        )
        out[ledger.merchant_id] = ledger
    return out


def build_privacy_report(
    run_dir: Path, *, on_merchant: Callable[[str], None] | None = None
) -> dict[str, Any]:
    privacy = read_privacy(run_dir)
    private = bool(privacy.get("private", True))
    seen = privacy.get("merchants", {})
    ledgers = _local_ledgers(run_dir)
    merchants: dict[str, Any] = {}
    for merchant in sorted(set(seen) | set(ledgers)):
        if on_merchant is not None:
            on_merchant(merchant)
        server = seen.get(merchant, {"rounds": [], "declined_rounds": []})
        entry: dict[str, Any] = {
            "server_view": server,
            "declined_rounds": list(server.get("declined_rounds", [])),
            "decline_reasons": {
                str(r["round"]): r.get("reason")
                for r in server.get("rounds", [])
                if not r["trained"]
            },
        }
        if merchant in ledgers:
            entry.update(ledger_report(ledgers[merchant]))
            disclosed = {
                r["round"]: r["epsilon_spent"]
                for r in server.get("rounds", [])
                if "epsilon_spent" in r
            }
            recorded = {r["round"]: r["epsilon"] for r in entry["rounds"]}
            entry["disclosed_agrees"] = all(
                abs(eps - recorded.get(rnd, float("nan"))) <= 1e-9 * max(1.0, eps)
                for rnd, eps in disclosed.items()
            )
        merchants[merchant] = entry
    accountants = sorted({m["accountant"] for m in merchants.values() if "accountant" in m})
    return {
        "run": str(run_dir),
        "private": private,
        "notice": None if private else NOT_PRIVATE,
        "requested": privacy.get("requested", {}),
        "accountant": accountants[0] if len(accountants) == 1 else ", ".join(accountants) or None,
        "merchants": merchants,
    }


def _eps(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Privacy report: {report['run']}", ""]
    if report["notice"]:
        lines += [f"**{report['notice']}**", ""]
    lines += [
        "Each merchant's spend from its own ledger (ε per DP unit, at the ledger's δ).",
        "",
        "| merchant | unit | accountant | δ | budget ε | spent ε | cross-check ε | remaining | "
        "rounds left at this rate | declined rounds | ledger agrees |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for merchant, info in report["merchants"].items():
        if "accountant" not in info:
            lines.append(
                f"| {merchant} | - | - | - | - | (not disclosed) | - | - | - | "
                f"{', '.join(map(str, info['declined_rounds'])) or '-'} | - |"
            )
            continue
        projected = info["projected_rounds_to_exhaustion"]
        lines.append(
            f"| {merchant} | per {info['unit']} | {info['accountant']} | {info['delta']:g} | "
            f"{info['budget_epsilon']:.3f} | {info['epsilon_spent']:.4f} | "
            f"{info['epsilon_spent_other']:.4f} ({info['other_accountant']}) | "
            f"{info['remaining_epsilon']:.4f} | {'-' if projected is None else projected} | "
            f"{', '.join(map(str, info['declined_rounds'])) or '-'} | "
            f"{'yes' if info['consistent_with_ledger'] else 'NO'} |"
        )
    for merchant, info in report["merchants"].items():
        lines += ["", f"## {merchant}", ""]
        for rnd, reason in info["decline_reasons"].items():
            lines.append(f"- round {rnd} declined: {reason}")
        if "rounds" in info:
            acc, other = info["accountant"], info["other_accountant"]
            lines += [
                "",
                f"| round | ε ({acc}, per {info['unit']}) | ε ({other}) | steps | σ | q |",
                "|---|---|---|---|---|---|",
            ]
            for row in info["rounds"]:
                lines.append(
                    f"| {row['round']} | {_eps(row['epsilon'])} | {_eps(row['epsilon_other'])} | "
                    f"{row['steps']} | {row['noise_multiplier']:.4f} | {row['sample_rate']:.4f} |"
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
    with_ledgers = {m: i for m, i in report["merchants"].items() if "rounds" in i}
    atomic_write_bytes(
        paths[2], privacy_curves(with_ledgers, accountant=str(report["accountant"] or "-"))
    )
    return report, paths
