"""``ecrec train``: one merchant's local DP training, outside any federation.

For a merchant trying ecrec on its own data (or a local-only baseline). The
same ledger rules apply as on a federated node: the planned steps must fit the
budget before training starts, and the spend is recorded before the adapter is
written.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the ranker on one merchant's data with DP-SGD (no federation)",
        description="Train LoRA adapters on one impressions file under DP-SGD and save them.",
    )
    parser.add_argument("--data", type=Path, required=True, help="the merchant's parquet file")
    parser.add_argument("--config", type=Path, help="TOML config (default: embedded default)")
    parser.add_argument("--validation", type=Path, help="parquet to score before and after")
    parser.add_argument("--ledger", type=Path, help="privacy ledger (default: next to --out)")
    parser.add_argument("--budget-epsilon", type=float, help="ε budget (default: config's)")
    parser.add_argument("--out", type=Path, required=True, help="adapter file to write (.npz)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ecrec.config import load_config
    from ecrec.data.io import read_impressions
    from ecrec.errors import BudgetExceededError, EcrecError
    from ecrec.evaluation import PooledEvaluator
    from ecrec.model.ranker import build_ranker
    from ecrec.privacy.accounting import noise_multiplier_for_target
    from ecrec.privacy.ledger import PrivacyLedger
    from ecrec.runfolder import atomic_write_bytes
    from ecrec.train.local import plan_round, train_local

    console = Console(stderr=True)
    if args.out.suffix != ".npz":
        raise EcrecError(f"--out {args.out}: expected a .npz file name")
    config = load_config(args.config)
    frame = read_impressions(args.data)
    validation = read_impressions(args.validation) if args.validation else None
    privacy = config.privacy
    budget = args.budget_epsilon or privacy.budget_epsilon
    if budget <= 0:
        raise EcrecError(f"--budget-epsilon must be > 0, got {budget}")
    sample_rate, steps = plan_round(len(frame), config.train)
    ledger = None
    sigma = 0.0
    if config.train.dp:
        ledger = PrivacyLedger.open(
            args.ledger or args.out.with_suffix(".ledger.json"),
            budget_epsilon=budget,
            delta=privacy.delta,
            accountant=privacy.accountant,
            merchant_id=str(frame["merchant_id"].iloc[0]),
        )
        sigma = privacy.noise_multiplier or noise_multiplier_for_target(
            target_epsilon=budget,
            delta=privacy.delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=privacy.accountant,
            prior_history=ledger.history,
        )
        check = ledger.check_round(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps)
        if not check.affordable:
            raise BudgetExceededError(f"{ledger.path}: {check.reason}")

    with console.status("loading the ranker..."):
        ranker = build_ranker(config.model, device=config.train.device)
        evaluator = (
            PooledEvaluator(ranker=ranker, validation=validation, config=config.evaluation)
            if validation is not None
            else None
        )
        before = evaluator.evaluate() if evaluator else None
    progress = Progress(
        TextColumn("[bold]local DP-SGD" if config.train.dp else "[bold]local training"),
        BarColumn(),
        TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("train", total=steps, loss=float("nan"))
        result = train_local(
            ranker,
            frame,
            config=config.train,
            noise_multiplier=sigma or None,
            on_step=lambda step, _total, loss: progress.update(task, completed=step, loss=loss),
        )
    spent = None
    if ledger is not None:
        existing = ledger.rounds
        spent_round = (max(existing) + 1) if existing else 1
        spent = ledger.record_round(
            round=spent_round, noise_multiplier=sigma, sample_rate=sample_rate, steps=steps
        )
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **ranker.adapter_state())
    atomic_write_bytes(args.out, buffer.getvalue())
    k = config.evaluation.k
    lines = [
        f"trained {result.steps} steps on {result.examples} rows "
        f"({result.samples_per_second:.1f} samples/s, mean loss {result.mean_loss:.4f})"
    ]
    if spent is not None and ledger is not None:
        lines.append(
            f"privacy: σ={sigma:.4f}, q={sample_rate:.4f}; ε spent {spent:.4f} of {budget:g} "
            f"(δ={privacy.delta:g}) in {ledger.path}"
        )
    if evaluator is not None and before is not None:
        after = evaluator.evaluate()
        lines.append(
            f"ndcg@{k} on {args.validation}: {before[f'ndcg@{k}']:.4f} → {after[f'ndcg@{k}']:.4f}"
        )
    lines.append(f"wrote {args.out} ({ranker.adapter_nbytes() / 1024:.0f} KB of adapters)")
    for line in lines:
        console.print(line)
    return 0
