"""Membership inference against the global ranker: non-private vs ε = 8 vs ε = 1 (issue 11.4).

One audit-ready synthetic marketplace (``ecrec data synth --audit-holdout 0.5
--canaries K``: half of the largest merchant's shoppers held out as non-members, K
canaries planted in its file), then the same federation three times -- without DP, and
under DP-SGD calibrated to ε = 8 and ε = 1 (PLD, δ = 1e-5, per shopper) -- each run
through ``ecrec simulate``'s production path (apps, nodes, ledgers) and audited with
``ecrec privacy audit``'s :func:`ecrec.privacy.audit_run.audit_run`.

The configuration is chosen to *memorise* so that the non-private baseline leaks
measurably, and to fit a loaded 2-core CPU: two merchants, few rows, the tiny random
BERT cross-encoder with LoRA r = 16, many local steps at a high learning rate, SecAgg+
off (it masks updates but does not change their sum, which is all the attack sees).

Run ``python -m benchmarks.privacy_audit [--quick]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    console,
    default_out,
    print_saved,
    result_header,
    setup_environment,
    table,
    write_results,
)


@dataclasses.dataclass(frozen=True)
class Settings:
    merchants: int = 2
    queries_per_merchant: int = 60
    candidates: int = 4
    canaries: int = 8
    canary_repeats: int = 4
    references: int = 99
    rounds: int = 2
    local_steps: int = 120
    batch_size: int = 16
    learning_rate: float = 1e-2
    lora_r: int = 16
    bootstrap: int = 1000
    epsilons: tuple[float, ...] = (8.0, 1.0)


QUICK = Settings(queries_per_merchant=20, rounds=1, local_steps=10, bootstrap=100, references=19)


def run_config(settings: Settings, data_dir: Path, epsilon: float | None) -> Any:
    from ecrec.config import RunConfig

    config = RunConfig()
    config = config.replace("data", dir=str(data_dir))
    config = config.replace(
        "model", architecture="cross-encoder", base_model="tiny", max_length=32,
        lora_r=settings.lora_r, lora_alpha=2 * settings.lora_r,
    )  # fmt: skip
    config = config.replace(
        "train", local_steps=settings.local_steps, batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, dp=epsilon is not None, seed=1,
    )  # fmt: skip
    if epsilon is not None:
        config = config.replace("privacy", budget_epsilon=epsilon)
    config = config.replace(
        "federation", rounds=settings.rounds, secagg=False,
        min_clients=settings.merchants, min_trainers=settings.merchants,
    )  # fmt: skip
    return config.replace("report", audit=False, explain=False, html=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--out", type=Path, default=default_out("privacy_audit"))
    parser.add_argument("--work", type=Path, help="keep the data and run folders here")
    parser.add_argument("--queries-per-merchant", type=int, help="marketplace size")
    parser.add_argument("--candidates", type=int, help="products shown per query")
    args = parser.parse_args(argv)
    setup_environment()
    from rich.console import Console

    from ecrec.cli import main as ecrec
    from ecrec.federation.simulation import simulate
    from ecrec.node.policy import NodePolicy
    from ecrec.privacy.audit_run import audit_run

    settings = QUICK if args.quick else Settings()
    for name in ("queries_per_merchant", "candidates"):
        if getattr(args, name) is not None:
            settings = dataclasses.replace(settings, **{name: getattr(args, name)})
    out = console()
    payload = result_header("privacy_audit", argv, settings=dataclasses.asdict(settings))
    policy = NodePolicy(
        allow_non_private=True, require_secagg=False, min_trainers=settings.merchants,
        allow_server_seed=True,
    )  # fmt: skip
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="ecrec-audit-") as scratch:
        work = args.work or Path(scratch)
        data_dir = work / "data"
        if not data_dir.exists():
            code = ecrec(
                ["data", "synth", "--out", str(data_dir), "--merchants", str(settings.merchants),
                 "--queries-per-merchant", str(settings.queries_per_merchant),
                 "--candidates", str(settings.candidates), "--validation-queries", "20",
                 "--audit-holdout", "0.5", "--canaries", str(settings.canaries),
                 "--canary-repeats", str(settings.canary_repeats),
                 "--canary-references", str(settings.references)]
            )  # fmt: skip
            if code:
                return code
        for epsilon in (None, *settings.epsilons):
            name = "non-private" if epsilon is None else f"ε = {epsilon:g}"
            run_dir = work / ("run-nodp" if epsilon is None else f"run-eps{epsilon:g}")
            config = run_config(settings, data_dir, epsilon)
            started = time.perf_counter()
            if not (run_dir / "metrics.jsonl").exists():
                out.print(f"simulating {name}...", style="dim")
                simulate(config, out=run_dir, node_policy=policy, console=Console(quiet=True))
            train_seconds = time.perf_counter() - started
            result = audit_run(run_dir, n_bootstrap=settings.bootstrap)
            result["simulation_seconds"] = round(train_seconds, 1)
            results[name] = result
            rows.append(_row(name, result))
    payload["results"] = results
    headers = ["run", "ε (pld)", "σ", "AUC loss", "TPR@1%FPR loss", "AUC calibrated"]
    headers += ["TPR@1%FPR calibrated", "canary exposure (mean / max)"]
    title = "membership inference on the global ranker (95% CIs, bootstrap over shoppers)"
    out.print(table(title, headers, rows))
    print_saved(out, write_results(args.out, payload))
    return 0


def _cell(value: float, ci: list[float] | None) -> str:
    if ci is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _row(name: str, result: dict[str, Any]) -> list[str]:
    privacy = result.get("privacy") or {}
    eps = f"{privacy['epsilon']:.3f}" if "epsilon" in privacy else "∞ (no DP)"
    sigma = ", ".join(f"{s:.3g}" for s in sorted(set(privacy.get("noise_multipliers", [])))) or "-"
    loss, calibrated = result["attacks"]["loss"], result["attacks"]["calibrated"]
    canaries = result.get("canaries") or {}
    final = canaries.get("final")
    exposure = (
        f"{final['mean_exposure']:.2f} / {final['max_exposure']:.2f} "
        f"(none: {final['expected_without_memorisation']:.2f})"
        if final
        else "-"
    )
    return [
        name, eps, sigma,
        _cell(loss["auc"], loss["auc_ci"]), _cell(loss["tpr_at_fpr"], loss["tpr_at_fpr_ci"]),
        _cell(calibrated["auc"], calibrated["auc_ci"]),
        _cell(calibrated["tpr_at_fpr"], calibrated["tpr_at_fpr_ci"]), exposure,
    ]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
