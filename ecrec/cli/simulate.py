"""``ecrec simulate``: the main job, a local federation of N merchants."""

from __future__ import annotations

import argparse
from pathlib import Path

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
        "--merchant-budget",
        type=_budget,
        action="append",
        default=[],
        metavar="MERCHANT=EPSILON",
        help="a merchant's own ε budget (repeatable); the node enforces it",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from ecrec.config import load_config
    from ecrec_simulations.runner import rounds_table, simulate

    config = load_config(args.config)
    if args.merchants is not None:
        if args.merchants < 2:
            raise EcrecError(f"--merchants must be >= 2, got {args.merchants}")
        config = config.replace("data", merchants=args.merchants)
    if args.rounds is not None:
        config = config.replace("federation", rounds=args.rounds)
    if args.data is not None:
        config = config.replace("data", dir=str(args.data))
    if args.resume and args.out is None:
        raise EcrecError("--resume needs --out RUN_FOLDER")
    out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    console = Console(stderr=True)
    summary = simulate(
        config,
        out=out,
        resume=args.resume,
        merchant_budgets=dict(args.merchant_budget),
        console=console,
    )
    Console().print(rounds_table(summary, k=config.evaluation.k))
    console.print(
        f"done in {summary.seconds:.0f} s. Wrote {out}/: config.toml, metrics.jsonl "
        f"({len(summary.rounds)} rounds), privacy.json, privacy_report.md, report.html, "
        "checkpoints/, ledgers/"
    )
    return 0
