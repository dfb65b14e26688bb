"""The ablation that chose the hybrid ranker's defaults, on a marketplace folder.

``python -m benchmarks.hybrid_ablation --data DIR`` (a folder from ``ecrec data import``,
e.g. the Home Depot dev sample) trains the hybrid head on all merchants' rows pooled,
in process, with the same ``train_local`` a node runs, over a grid of learning rate x
steps (x learning-rate schedule with ``--schedules``), with and without DP (σ = 1.0),
and scores single features alone. Scores are on
the folder's validation shard: NDCG@10 and AUC with 95% bootstrap CIs over queries.
Centralised on purpose: it isolates what the recipe can learn from what federation
and the budget cost (``benchmarks.quality`` measures those).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import (
    console,
    default_out,
    print_saved,
    result_header,
    setup_environment,
    table,
    write_results,
)
from benchmarks.quality import SeedScores, metric_replicates, read_market
from ecrec.model.hybrid import EMBEDDING_CACHE_ENV, FEATURES


def main(argv: Sequence[str] | None = None) -> int:
    setup_environment()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hybrid_ablation")
    parser.add_argument("--data", type=Path, required=True, help="a marketplace folder")
    parser.add_argument("--lrs", default="0.01,0.03,0.1")
    parser.add_argument("--steps", default="60,200")
    parser.add_argument(
        "--schedules", default="constant",
        help='learning-rate schedules to compare, e.g. "constant,cosine,linear"',
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=0, help="warm-up steps of every run")
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--bootstrap", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache folder")
    parser.add_argument("--out", type=Path, default=default_out("hybrid_ablation"))
    args = parser.parse_args(argv)
    if args.cache:
        os.environ.setdefault(EMBEDDING_CACHE_ENV, str(args.cache))

    from ecrec.config import load_config
    from ecrec.model.ranker import build_ranker
    from ecrec.train.local import train_local

    merchants, validation = read_market(args.data)
    pooled = pd.concat(merchants.values(), ignore_index=True)
    defaults = load_config(None)
    ranker = build_ranker(defaults.model, device="cpu")
    initial = ranker.adapter_state()
    scores: dict[str, np.ndarray] = {}
    for feature in ("cosine-doc", "char-title", "words-title", "stems-title"):
        state = {k: v.copy() for k, v in initial.items()}
        state["head.weight"][:] = 0
        state["head.weight"][0, FEATURES.index(feature)] = 1
        ranker.load_adapter_state(state)
        scores[f"feature alone: {feature}"] = ranker.score_frame(validation)
    schedules = [x.strip() for x in args.schedules.split(",") if x.strip()]
    grid = [
        (private, lr, steps, schedule)
        for private in (False, True)
        for lr in (float(x) for x in args.lrs.split(","))
        for steps in (int(x) for x in args.steps.split(","))
        for schedule in schedules
    ]
    for private, lr, steps, schedule in grid:
        ranker.load_adapter_state(initial)
        train = dataclasses.replace(
            defaults.train, learning_rate=lr, local_steps=steps, dp=private, seed=0,
            lr_schedule=schedule, warmup_steps=args.warmup,
        )  # fmt: skip
        train_local(ranker, pooled, config=train, noise_multiplier=args.sigma)
        name = f"{'DP σ=' + str(args.sigma) if private else 'non-private'}, lr {lr:g}"
        if len(schedules) > 1 or schedule != "constant" or args.warmup:
            name += f", {schedule}" + (f" after {args.warmup} warm-up" if args.warmup else "")
        scores[f"{name}, {steps} steps"] = ranker.score_frame(validation)
    seed = SeedScores(validation=validation, scores=scores, seconds={})
    rows, payload_rows = [], {}
    for name in scores:
        reps = metric_replicates([seed], name, replicates=args.bootstrap)
        cells = {}
        for key in ("ndcg", "auc"):
            lo, hi = np.nanpercentile(reps[key][1:], [2.5, 97.5])
            cells[key] = {"mean": float(reps[key][0]), "ci": [float(lo), float(hi)]}
        payload_rows[name] = cells
        rows.append(
            [name]
            + [f"{c['mean']:.4f} [{c['ci'][0]:.4f}, {c['ci'][1]:.4f}]" for c in cells.values()]
        )
    out = console()
    out.print(table(f"hybrid head ablation on {args.data}", ["run", "NDCG@10", "AUC"], rows))
    payload = result_header("hybrid_ablation", argv, rows=payload_rows, data=str(args.data))
    print_saved(out, write_results(args.out, payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
