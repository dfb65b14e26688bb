"""``ecrec train``: one merchant's local DP training, outside any federation.

For a merchant trying ecrec on its own data (or a local-only baseline). It is the
merchant's node doing one round for itself: the same policy checks, the same
fail-closed ledger (initialised only with ``--init-ledger``), the spend recorded
before the adapter is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the ranker on one merchant's data with DP-SGD (no federation)",
        description="Train adapters on one impressions file under DP-SGD and save them.",
    )
    parser.add_argument("--data", type=Path, required=True, help="the merchant's parquet file")
    parser.add_argument("--config", type=Path, help="TOML config (default: embedded default)")
    parser.add_argument("--validation", type=Path, help="parquet to score before and after")
    parser.add_argument(
        "--policy", type=Path, help="node policy file (default: the strict default)"
    )
    parser.add_argument("--budget-epsilon", type=float, help="ε budget (overrides the policy's)")
    parser.add_argument("--ledger", type=Path, help="privacy ledger (default: next to --data)")
    parser.add_argument("--ledger-key-file", type=Path, help="node secret (default: LEDGER.key)")
    parser.add_argument(
        "--init-ledger", action="store_true", help="create the ledger (the merchant's explicit act)"
    )
    parser.add_argument("--out", type=Path, required=True, help="adapter file to write (.npz)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import io

    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ecrec.atomic import atomic_write_bytes
    from ecrec.config import load_config
    from ecrec.data.io import read_impressions
    from ecrec.data.schema import USER_ID
    from ecrec.errors import BudgetExceededError, EcrecError
    from ecrec.evaluation import PooledEvaluator
    from ecrec.model.ranker import build_ranker
    from ecrec.node import MerchantNode, NodePolicy, NodeSettings, RoundRequest, load_policy
    from ecrec.node.settings import default_anchor
    from ecrec.privacy.ledger import PrivacyLedger
    from ecrec.train.local import dp_units, plan_round

    console = Console(stderr=True)
    if args.out.suffix != ".npz":
        raise EcrecError(f"--out {args.out}: expected a .npz file name")
    config = load_config(args.config).replace("federation", rounds=1)  # one local round
    frame = read_impressions(args.data)
    policy = load_policy(args.policy) if args.policy else NodePolicy()
    if args.budget_epsilon is not None:
        if not args.budget_epsilon > 0:
            raise EcrecError(f"--budget-epsilon must be > 0, got {args.budget_epsilon}")
        policy = dataclasses.replace(policy, budget_epsilon=args.budget_epsilon)
    ledger_path = args.ledger or args.data.with_suffix(".ledger.json")
    key_file = args.ledger_key_file or ledger_path.with_name(ledger_path.name + ".key")
    settings = NodeSettings(
        data_path=args.data,
        ledger_path=ledger_path,
        key_file=key_file,
        anchor_path=default_anchor(key_file),
        journal_path=ledger_path.with_suffix(".journal.jsonl"),
        policy=policy,
        policy_file=args.policy,
    )
    if args.init_ledger:
        unit = policy.unit_for(has_user_ids=USER_ID in frame.columns)
        units = dp_units(frame, unit=unit, max_rows_per_user=config.privacy.max_rows_per_user)
        PrivacyLedger.init(
            ledger_path,
            merchant_id=str(frame["merchant_id"].iloc[0]),
            budget_epsilon=policy.budget_epsilon,
            delta=min(config.privacy.delta, policy.delta_ceiling(units.n_units)),
            accountant=policy.accountant,
            unit=unit,
            key_file=key_file,
            anchor_path=settings.anchor_path,
        )
        console.print(f"initialised the privacy ledger {ledger_path} (per {unit})")
    node = MerchantNode(settings=settings, frame=frame)
    ledger = node.ledger
    validation = read_impressions(args.validation) if args.validation else None
    with console.status("loading the ranker..."):
        ranker = node.ranker_for(config.model, device=config.train.device)
        evaluator = (
            PooledEvaluator(
                ranker=build_ranker(config.model), validation=validation, config=config.evaluation
            )
            if validation is not None
            else None
        )
        before = evaluator.evaluate() if evaluator else None
    units = dp_units(
        frame, unit=ledger.unit, max_rows_per_user=config.privacy.max_rows_per_user
    ).n_units
    _, steps = plan_round(units, config.train)
    progress = Progress(
        TextColumn("[bold]local DP-SGD" if config.train.dp else "[bold]local training"),
        BarColumn(),
        TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        console=console,
    )
    server_round = max(ledger.rounds, default=0) + 1
    task = progress.add_task("train", total=steps, loss=float("nan"))

    def on_step(step: int, _total: int, loss: float) -> None:
        if not progress.live.is_started:  # shown only once training really started
            progress.start()
        progress.update(task, completed=step, loss=loss)

    try:
        outcome = node.run_round(
            RoundRequest(
                server_round=server_round, config=config, global_state=ranker.adapter_state()
            ),
            federated=False,
            on_step=on_step,
        )
    finally:
        progress.stop()
    if outcome.declined:
        # The merchant's own console: the journal's full reason, not the server's version.
        reason = node.journal.records()[-1].get("reason", outcome.decline_reason)
        raise BudgetExceededError(f"{ledger_path}: declined: {reason}")
    assert outcome.state is not None
    buffer = io.BytesIO()
    np.savez(buffer, **outcome.state)
    atomic_write_bytes(args.out, buffer.getvalue())
    trained = node.journal.records()[-1]
    lines = [
        f"trained {trained['steps']} steps on {trained['rows']} rows ({trained['units']} DP "
        f"units, per {trained['unit']}; mean loss {trained['train_loss']:.4f})"
    ]
    if config.train.dp:
        lines.append(
            f"privacy: σ={trained['noise_multiplier']:.4f}, q={trained['sample_rate']:.4f}; "
            f"ε spent {ledger.spent_epsilon():.4f} of {policy.budget_epsilon:g} "
            f"({ledger.accountant}, δ={ledger.delta:g}, per {ledger.unit}) in {ledger_path}"
        )
    if evaluator is not None and before is not None:
        after = evaluator.evaluate(outcome.state)
        k = config.evaluation.k
        lines.append(
            f"ndcg@{k} on {args.validation}: {before[f'ndcg@{k}']:.4f} → {after[f'ndcg@{k}']:.4f}"
        )
    lines.append(f"wrote {args.out} ({ranker.adapter_nbytes() / 1024:.0f} KB of adapters)")
    for line in lines:
        console.print(line)
    return 0
