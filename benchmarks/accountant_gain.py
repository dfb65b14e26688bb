"""What the tight accountant buys (issue 11.3): the same budget, less noise, a better ranker?

For the default ``ecrec simulate`` budget (the embedded default config's ε, δ, rounds,
local steps and batch size, on its default synthetic marketplace, DP unit = shopper),
every merchant's node calibrates σ so that the planned rounds spend the budget. This
benchmark calibrates that σ two ways for each merchant:

* ``old``: ecrec's accountant before issue 11 -- Opacus RDP at integer orders only
  (``benchmarks.accounting.old_integer_rdp``), the smallest σ whose ε stays <= budget;
* ``new``: the PLD default (:func:`ecrec.privacy.accounting.noise_multiplier_for_target`,
  exactly what the node calls), never below the node policy's σ floor;

prints each σ with its ε under both accountants, then runs the same short simulation
with each σ (production apps, nodes, ledgers, SecAgg+; the same training seed, so the
two runs differ only in σ) and prints NDCG@10 side by side. The "old" run gets its σ
from the nodes themselves: each merchant's budget is set to the PLD ε that the old σ
really spends, so the node's own PLD calibration lands on that σ (within its 1 %
tolerance; the σ used is read back from each merchant's ledger).

Runtime is kept modest: the tiny random BERT by default (``--base-model minilm`` for
the real one) and the default's few rounds; NDCG differences between single runs on the
tiny model are small and noisy, the σ and ε columns are exact.

On real data (issue 11.3's second half): ``--data DIR`` takes a folder written by
``ecrec data import`` (e.g. the Home Depot pairs, as ``benchmarks.quality`` imports
them; repeat ``--data`` for several seeds' splits) in place of the synthetic
marketplace, and the table adds AUC; use ``--base-model minilm`` there (the hybrid's
zero-shot cosine needs the real encoder).

Run ``python -m benchmarks.accountant_gain [--base-model minilm] [--rounds R]
[--data DIR ...]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.accounting import old_integer_rdp
from benchmarks.common import (
    console,
    default_out,
    print_saved,
    refuse_non_imports,
    result_header,
    setup_environment,
    table,
    write_results,
)

#: Calibration of the old accountant: bisection stops within this relative width of σ.
SIGMA_TOLERANCE = 1e-4
KEYS = ("sigma", "epsilon_old_rdp", "epsilon_pld")


def old_sigma(*, budget: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest σ whose integer-order RDP ε is <= budget (what ecrec calibrated before)."""
    from ecrec.privacy.accounting import RoundSpend

    def eps(sigma: float) -> float:
        spend = RoundSpend(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps)
        return old_integer_rdp([spend], delta)

    low, high = 0.05, 1.0
    while eps(high) > budget:
        low, high = high, high * 2
    while high - low > SIGMA_TOLERANCE * high:
        mid = (low + high) / 2
        low, high = (low, mid) if eps(mid) <= budget else (mid, high)
    return high


def calibrations(config: Any, data_dir: Path) -> dict[str, dict[str, Any]]:
    """Per merchant: q, steps, and σ and ε under both accountants at the run's budget."""
    from ecrec.data.io import read_impressions
    from ecrec.data.schema import USER_ID
    from ecrec.node.policy import NodePolicy
    from ecrec.privacy.accounting import (
        RoundSpend,
        epsilon_for_history,
        noise_multiplier_for_target,
    )
    from ecrec.simulation import merchant_ids
    from ecrec.train.local import dp_units, plan_round

    policy = NodePolicy()
    budget, delta = config.privacy.budget_epsilon, config.privacy.delta
    out: dict[str, dict[str, Any]] = {}
    for merchant in merchant_ids(data_dir):
        frame = read_impressions(data_dir / f"merchant_{merchant}.parquet")
        unit = policy.unit_for(has_user_ids=USER_ID in frame.columns)
        units = dp_units(frame, unit=unit, max_rows_per_user=config.privacy.max_rows_per_user)
        q, steps = plan_round(units.n_units, config.train)
        total = steps * config.federation.rounds
        sigmas = {
            "old": max(
                old_sigma(budget=budget, delta=delta, sample_rate=q, steps=total),
                policy.min_noise_multiplier,
            ),
            "new": max(
                noise_multiplier_for_target(
                    target_epsilon=budget, delta=delta, sample_rate=q, steps=total,
                    accountant="pld",
                ),
                policy.min_noise_multiplier,
            ),
        }  # fmt: skip
        row: dict[str, Any] = {"units": units.n_units, "unit": unit, "q": q, "steps": total}
        for name, sigma in sigmas.items():
            spend = [RoundSpend(noise_multiplier=sigma, sample_rate=q, steps=total)]
            row[name] = {
                "sigma": sigma,
                "epsilon_old_rdp": old_integer_rdp(spend, delta),
                "epsilon_pld": epsilon_for_history(spend, delta=delta, accountant="pld"),
            }
        out[merchant] = row
    return out


def run_simulation(
    config: Any, *, out: Path, budgets: dict[str, float] | None, seed_policy: Any
) -> dict[str, Any]:
    """One ``ecrec simulate``; its NDCG@10 per round and each merchant's σ and ε."""
    from rich.console import Console

    from ecrec.federation.simulation import simulate

    started = time.perf_counter()
    summary = simulate(
        config,
        out=out,
        node_policy=seed_policy,
        merchant_budgets=budgets,
        console=Console(stderr=True, quiet=True),
    )
    k = config.evaluation.k
    ledgers = _ledger_sigmas(out)
    return {
        "ndcg@10": [r.get(f"ndcg@{k}") for r in summary.rounds],
        "final_ndcg@10": summary.rounds[-1].get(f"ndcg@{k}"),
        "final_auc": summary.rounds[-1].get("auc"),
        "merchants": {
            m: {"epsilon": info["spent"], "accountant": info["accountant"], **ledgers[m]}
            for m, info in summary.privacy.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def _ledger_sigmas(run_dir: Path) -> dict[str, dict[str, Any]]:
    from ecrec.privacy.ledger import PrivacyLedger
    from ecrec.simulation import NODES_FILE, simulated_nodes

    out = {}
    for node in simulated_nodes(run_dir / NODES_FILE):
        ledger = PrivacyLedger.load(
            node.ledger_path, key_file=node.key_file, anchor_path=node.anchor_path
        )
        out[ledger.merchant_id] = {
            "sigma": sorted({s.noise_multiplier for s in ledger.history}),
            "epsilon_old_rdp": old_integer_rdp(list(ledger.history), ledger.delta),
        }
    return out


def bench_config(base_model: str, rounds: int | None) -> Any:
    """The embedded default, with a fixed training seed (the two runs differ only in σ),
    the base model given and no explanations or HTML page (they change no score)."""
    from ecrec.config import load_config

    config = load_config(None)
    config = config.replace("model", base_model=base_model)
    if rounds is not None:
        config = config.replace("federation", rounds=rounds)
    config = config.replace("train", seed=11)
    return config.replace("report", explain=False, html=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", default="tiny", help='"tiny" (default) or "minilm"')
    parser.add_argument("--rounds", type=int, help="rounds (default: the default config's)")
    parser.add_argument("--out", type=Path, default=default_out("accountant_gain"))
    parser.add_argument("--work", type=Path, help="keep the run folders here")
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        help="an `ecrec data import` folder to run on instead of the synthetic marketplace "
        "(repeat for several splits)",
    )
    args = parser.parse_args(argv)
    refuse_non_imports(parser, args.data)
    setup_environment()
    logging.getLogger("absl").setLevel(logging.ERROR)
    from ecrec.node.policy import NodePolicy
    from ecrec.simulation import prepare_data

    out = console()
    config = bench_config(args.base_model, args.rounds)
    policy = NodePolicy(allow_server_seed=True)  # the training seed only; σ from each node
    payload = result_header("accountant_gain", argv, config=config.to_dict())
    with tempfile.TemporaryDirectory(prefix="ecrec-gain-") as scratch:
        work = args.work or Path(scratch)
        sources = args.data or [prepare_data(config, work / "data-source")]
        payload["datasets"] = {}
        for index, data_dir in enumerate(sources):
            label = str(data_dir) if args.data else "default synthetic marketplace"
            run_config = config.replace("data", dir=str(data_dir))
            payload["datasets"][label] = compare(
                run_config, data_dir, work=work / f"data-{index}", policy=policy, out=out
            )
    if len(sources) > 1:
        means = {
            name: {
                key: statistics.fmean(d["runs"][name][key] for d in payload["datasets"].values())
                for key in ("final_ndcg@10", "final_auc")
            }
            for name in ("old", "new")
        }
        payload["mean"] = means
        out.print(
            table(
                f"mean over {len(sources)} data folders",
                ["accountant", "NDCG@10 (final)", "AUC (final)"],
                [
                    [n, f"{m['final_ndcg@10']:.4f}", f"{m['final_auc']:.4f}"]
                    for n, m in means.items()
                ],
            )
        )
    print_saved(out, write_results(args.out, payload))
    return 0


def compare(config: Any, data_dir: Path, *, work: Path, policy: Any, out: Any) -> dict[str, Any]:
    """σ under both accountants on one data folder, then the two simulations; prints both
    tables and returns what they show."""
    calib = calibrations(config, data_dir)
    headers = ["merchant", "units", "q", "steps"]
    headers += [f"{col} ({w})" for w in ("old", "new") for col in ("σ", "ε old-rdp", "ε pld")]
    cells = [
        [m, str(r["units"]), f"{r['q']:.4g}", str(r["steps"])]
        + [f"{r[w][key]:.4f}" for w in ("old", "new") for key in KEYS]
        for m, r in calib.items()
    ]
    title = (
        f"{data_dir.name}: σ for ε = {config.privacy.budget_epsilon:g}, "
        f"δ = {config.privacy.delta:g} over {config.federation.rounds} rounds x "
        f"{config.train.local_steps} steps"
    )
    out.print(table(title, headers, cells))
    budgets = {m: r["old"]["epsilon_pld"] for m, r in calib.items()}
    runs = {}
    for name, merchant_budgets in (("old", budgets), ("new", None)):
        out.print(f"simulating with the {name} accountant's σ...", style="dim")
        runs[name] = run_simulation(
            config, out=work / f"run-{name}", budgets=merchant_budgets, seed_policy=policy
        )
    rows = []
    for name, run in runs.items():
        for merchant, info in sorted(run["merchants"].items()):
            rows.append(
                [
                    name,
                    merchant,
                    ", ".join(f"{s:.4f}" for s in info["sigma"]),
                    f"{info['epsilon']:.4f} ({info['accountant']})",
                    f"{info['epsilon_old_rdp']:.4f}",
                    f"{run['final_ndcg@10']:.4f}",
                    f"{run['final_auc']:.4f}",
                ]
            )
    out.print(
        table(
            f"{data_dir.name}: the same simulation with each σ ({config.model.base_model}, "
            f"{config.federation.rounds} rounds; ε from each merchant's own ledger)",
            ["accountant", "merchant", "σ", "ε spent", "ε old-rdp", "NDCG@10", "AUC"],
            rows,
        )
    )
    return {"calibration": calib, "runs": runs}


__all__ = ["calibrations", "main", "old_sigma"]

if __name__ == "__main__":
    raise SystemExit(main())
