"""``ecrec simulate``: the main job, a local federation of N merchants.

It plays each merchant's part (initialises its ledger under the node policy given,
writes its node config), then runs the ecrec ServerApp and ClientApp -- the same
objects a deployment runs -- on Flower's simulation engine.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from ecrec.errors import EcrecError


def _budget(text: str) -> tuple[str, float]:
    merchant, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return merchant.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MERCHANT=EPSILON, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run a federated training simulation locally",
        description="Run N merchants and the server on this machine (Flower simulation engine) "
        "and write a run folder.",
    )
    parser.add_argument("--config", type=Path, help="TOML config (default: embedded default)")
    parser.add_argument("--merchants", type=int, help="number of synthetic merchants")
    parser.add_argument("--rounds", type=int, help="federated rounds")
    parser.add_argument("--data", type=Path, help="data folder from `ecrec data synth|import`")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<timestamp>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--node-policy",
        type=Path,
        metavar="FILE",
        help="the node privacy policy every simulated merchant applies (default: the strict "
        "default policy; see ecrec/node/policy.py)",
    )
    parser.add_argument(
        "--unit",
        choices=("auto", "user", "row"),
        help="the DP unit: user (one shopper), row (one impression), auto (user where ids exist)",
    )
    parser.add_argument(
        "--merchant-budget",
        type=_budget,
        action="append",
        default=[],
        metavar="MERCHANT=EPSILON",
        help="a merchant's own ε budget (repeatable); the node enforces it",
    )
    parser.set_defaults(handler=run)


def rounds_table(summary: Any, *, k: int) -> Any:
    """The final per-round table: quality, who trained, traffic and time."""
    from rich.table import Table

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    table = Table(title=f"ecrec simulation: {summary.run_dir}")
    for column in ("round", f"ndcg@{k}", f"mrr@{k}", "auc", "trained", "declined", "KB up", "s"):
        table.add_column(column, justify="right")
    for record in summary.rounds:
        table.add_row(
            str(record["round"]),
            fmt(record.get(f"ndcg@{k}")),
            fmt(record.get(f"mrr@{k}")),
            fmt(record.get("auc")),
            str(len(record.get("trained", []))),
            ",".join(record.get("declined", [])) or ("skipped" if record.get("skipped") else "-"),
            f"{record.get('bytes_up', 0) / 1024:.0f}",
            f"{record.get('wall_seconds', 0):.1f}",
        )
    return table


def privacy_table(summary: Any) -> Any:
    """Each merchant's own ledger: ε spent, with its accountant and DP unit beside it."""
    from rich.table import Table

    table = Table(title="privacy spent (each merchant's own ledger)")
    for column in ("merchant", "ε spent", "budget", "remaining", "δ", "accountant", "unit"):
        table.add_column(column, justify="right")
    for merchant, info in sorted(summary.privacy.items()):
        table.add_row(
            merchant,
            f"{info['spent']:.3f}",
            f"{info['budget']:g}",
            f"{info['remaining']:.3f}",
            f"{info['delta']:g}",
            str(info["accountant"]),
            f"per {info['unit']}",
        )
    return table


def _check_before_start(args: argparse.Namespace, config: Any, out: Path) -> None:
    """Refuse what would fail later, before anything is written: an --out that is not a
    folder, or a --merchant-budget for a merchant this run does not have."""
    from ecrec.data.io import check_user_path
    from ecrec.data.schema import merchant_ids

    check_user_path(out, option="--out")
    if os.path.lexists(out) and not out.is_dir():
        raise EcrecError(f"--out {out}: exists and is not a folder")
    if not args.merchant_budget:
        return
    if config.data.dir:
        from ecrec.simulation import merchant_ids as merchants_in

        known = set(merchants_in(Path(config.data.dir)))
    else:
        known = set(merchant_ids(config.data.merchants))
    unknown = sorted({m for m, _ in args.merchant_budget} - known)
    if unknown:
        raise EcrecError(f"--merchant-budget: unknown merchant {unknown[0]!r}")


def run(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from ecrec.config import load_config
    from ecrec.federation.simulation import simulate

    config = load_config(args.config)
    if args.merchants is not None:
        if args.merchants < 2:
            raise EcrecError(f"--merchants must be >= 2, got {args.merchants}")
        config = config.replace("data", merchants=args.merchants)
    if args.rounds is not None:
        config = config.replace("federation", rounds=args.rounds)
    if args.data is not None:
        config = config.replace("data", dir=str(args.data))
    if args.unit is not None:
        config = config.replace("privacy", unit=args.unit)
    if args.resume and args.out is None:
        raise EcrecError("--resume needs --out RUN_FOLDER")
    policy = None
    if args.node_policy is not None:
        from ecrec.node.policy import load_policy

        load_policy(args.node_policy)  # a bad policy file fails here, with its name
        policy = args.node_policy
    if args.unit not in (None, "auto"):
        import dataclasses

        from ecrec.node.policy import NodePolicy, load_policy

        base = load_policy(policy) if policy is not None else NodePolicy()
        policy = dataclasses.replace(base, unit=args.unit)
    out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    _check_before_start(args, config, out)
    console = Console(stderr=True)
    fresh = not args.resume and not os.path.lexists(out)
    try:
        summary = simulate(
            config,
            out=out,
            resume=args.resume,
            node_policy=policy,
            merchant_budgets=dict(args.merchant_budget),
            console=console,
        )
    except BaseException:
        if fresh and not (out / "metrics.jsonl").exists():
            # Nothing was evaluated or trained (round 0 comes first): no partial run folder.
            shutil.rmtree(out, ignore_errors=True)
        raise
    Console().print(rounds_table(summary, k=config.evaluation.k))
    Console().print(privacy_table(summary))
    console.print(
        f"done in {summary.seconds:.0f} s. Wrote {out}/: config.toml, metrics.jsonl "
        f"({len(summary.rounds)} rounds), privacy.json, fairness.json, privacy_report.md, "
        "report.html, checkpoints/; each merchant's node state: ledgers/, journals/, "
        "node-secrets/, nodes.toml"
    )
    return 0
