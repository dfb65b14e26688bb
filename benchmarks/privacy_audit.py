"""Membership inference against the global ranker: non-private vs ε = 8 vs ε = 1 (issue 11.4).

One audit-ready synthetic marketplace in two mirrored halves (``ecrec data synth
--audit-holdout 0.5 --canaries K``, and the same with ``--audit-mirror``: the largest
merchant's shoppers split in two, each half trained in one copy and held out in the
other, the same K canaries planted in both), then the same federation on each copy three
times -- without DP, and under DP-SGD calibrated to ε = 8 and ε = 1 (PLD, δ = 1e-5, per
shopper) -- each run through ``ecrec simulate``'s production path (apps, nodes,
ledgers), and each pair audited with ``ecrec privacy audit RUN --mirror RUN2``
(:func:`ecrec.privacy.audit_run.audit_run`): every row scored by the run that trained on
it against the run that held it out, so which shoppers landed on which side cancels.

The configuration is chosen to *memorise* so that the non-private baseline leaks
measurably, and to fit a loaded 2-core CPU: two merchants, few rows, the tiny random
BERT cross-encoder with LoRA r = 16, many local steps at a high learning rate, SecAgg+
off (it masks updates but does not change their sum, which is all the attack sees).

Run ``python -m benchmarks.privacy_audit [--quick] [--audit-seed S]``.
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
    audit_seed: int = 0


#: The two mirrored copies of the marketplace: b holds out the shoppers a trains on.
HALVES = ("a", "b")


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
    parser.add_argument("--local-steps", type=int, help="DP-SGD steps per round")
    parser.add_argument("--audit-seed", type=int, help="which split of the shoppers (default 0)")
    args = parser.parse_args(argv)
    setup_environment()
    from rich.console import Console

    from ecrec.cli import main as ecrec
    from ecrec.federation.simulation import simulate
    from ecrec.node.policy import NodePolicy
    from ecrec.privacy.audit_run import audit_run

    settings = QUICK if args.quick else Settings()
    for name in ("queries_per_merchant", "candidates", "local_steps", "audit_seed"):
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
        for half in HALVES:
            data_dir = work / f"data-{half}"
            if not data_dir.exists():
                code = ecrec(
                    ["data", "synth", "--out", str(data_dir),
                     "--merchants", str(settings.merchants),
                     "--queries-per-merchant", str(settings.queries_per_merchant),
                     "--candidates", str(settings.candidates), "--validation-queries", "20",
                     "--audit-holdout", "0.5", "--audit-seed", str(settings.audit_seed),
                     "--canaries", str(settings.canaries),
                     "--canary-repeats", str(settings.canary_repeats),
                     "--canary-references", str(settings.references),
                     *(["--audit-mirror"] if half == "b" else [])]
                )  # fmt: skip
                if code:
                    return code
        for epsilon in (None, *settings.epsilons):
            name = "non-private" if epsilon is None else f"ε = {epsilon:g}"
            tag = "nodp" if epsilon is None else f"eps{epsilon:g}"
            started = time.perf_counter()
            for half in HALVES:
                run_dir = work / f"run-{half}-{tag}"
                if not (run_dir / "metrics.jsonl").exists():
                    out.print(f"simulating {name} on half {half}...", style="dim")
                    config = run_config(settings, work / f"data-{half}", epsilon)
                    simulate(config, out=run_dir, node_policy=policy, console=Console(quiet=True))
            train_seconds = time.perf_counter() - started
            result = audit_run(
                work / f"run-a-{tag}", mirror=work / f"run-b-{tag}", n_bootstrap=settings.bootstrap
            )
            result["simulation_seconds"] = round(train_seconds, 1)
            results[name] = result
            rows.append(_row(name, result))
    payload["results"] = results
    headers = ["run", "ε (pld)", "σ", "AUC loss (paired)", "TPR@1%FPR (paired)"]
    headers += ["AUC calibrated (paired)", "AUC loss, each run alone"]
    headers += ["canary exposure, each run (mean / max)"]
    title = (
        "membership inference on the global ranker, mirrored pairs (95% CIs, bootstrap over "
        "shoppers)"
    )
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
    single = result["pairing"]["single"]
    alone = " / ".join(f"{single[side]['loss']['auc']:.3f}" for side in ("run", "mirror"))
    exposures = [
        canaries["final"]
        for canaries in (result.get("canaries"), result["pairing"].get("mirror_canaries"))
        if canaries
    ]
    exposure = (
        " ; ".join(f"{e['mean_exposure']:.2f} / {e['max_exposure']:.2f}" for e in exposures)
        + f" (none: {exposures[0]['expected_without_memorisation']:.2f})"
        if exposures
        else "-"
    )
    return [
        name, eps, sigma,
        _cell(loss["auc"], loss["auc_ci"]), _cell(loss["tpr_at_fpr"], loss["tpr_at_fpr_ci"]),
        _cell(calibrated["auc"], calibrated["auc_ci"]), alone, exposure,
    ]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
