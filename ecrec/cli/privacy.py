"""``ecrec privacy``: what a configuration will cost, and what a node has spent.

Heavy imports (Opacus pulls in torch) happen inside the handlers so that
building the parser for other commands stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ecrec.cli.args import one_line_errors


def register(subparsers: Any) -> None:
    """Add ``privacy plan``, ``privacy show`` and ``privacy report`` to the parser."""
    privacy = one_line_errors(
        subparsers.add_parser(
            "privacy",
            help="privacy budgets: plan a configuration, inspect a node's ledger",
            description="Privacy accounting for DP-SGD training.",
        )
    )
    commands = privacy.add_subparsers(dest="privacy_command", metavar="SUBCOMMAND", required=True)

    plan = one_line_errors(
        commands.add_parser(
            "plan",
            help="the ε a training configuration will cost (or the noise a target ε needs)",
            description=(
                "Print, as JSON, the (ε, δ) cost of DP-SGD with Poisson sample rate Q for N "
                "steps at noise multiplier S, or the smallest S that keeps ε at or under E."
            ),
        )
    )
    plan.add_argument(
        "--sample-rate",
        type=float,
        required=True,
        metavar="Q",
        help="Poisson sampling rate per step (batch size / examples), in (0, 1]",
    )
    noise = plan.add_mutually_exclusive_group(required=True)
    noise.add_argument(
        "--noise-multiplier",
        type=float,
        metavar="S",
        help="noise standard deviation relative to the clipping norm",
    )
    noise.add_argument(
        "--target-epsilon",
        type=float,
        metavar="E",
        help="find the smallest noise multiplier with ε <= E",
    )
    plan.add_argument(
        "--steps", type=int, required=True, metavar="N", help="number of DP-SGD steps"
    )
    plan.add_argument("--delta", type=float, required=True, metavar="D", help="target δ")
    plan.add_argument(
        "--accountant",
        choices=("rdp", "prv"),
        default="rdp",
        help="privacy accountant (default: rdp)",
    )
    plan.set_defaults(handler=_plan)

    show = one_line_errors(
        commands.add_parser(
            "show",
            help="summarise a node's privacy ledger",
            description="Verify a privacy ledger and print its summary as JSON.",
        )
    )
    show.add_argument("ledger", metavar="LEDGER", help="path to the ledger file")
    show.add_argument("--key-file", metavar="F", help="key file, for an encrypted ledger")
    show.set_defaults(handler=_show)

    report = one_line_errors(
        commands.add_parser(
            "report",
            help="every merchant's ε per round in a run (JSON, Markdown and a plot)",
            description=(
                "Recompute each merchant's ε per round from the run's privacy.json under the "
                "configured accountant (the other alongside), check it against what the "
                "nodes' ledgers reported, and project rounds to exhaustion."
            ),
        )
    )
    report.add_argument("run", metavar="RUN", help="run folder")
    report.set_defaults(handler=_report)


def _print_json(obj: Any) -> None:
    # allow_nan=False: never print non-standard JSON; callers make values finite.
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def _plan(args: argparse.Namespace) -> int:
    from ecrec.privacy.accounting import plan

    _print_json(
        plan(
            sample_rate=args.sample_rate,
            steps=args.steps,
            delta=args.delta,
            noise_multiplier=args.noise_multiplier,
            target_epsilon=args.target_epsilon,
            accountant=args.accountant,
        )
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    from ecrec.privacy.ledger import PrivacyLedger, read_key_file

    key = read_key_file(args.key_file) if args.key_file else None
    _print_json(PrivacyLedger.load(args.ledger, key=key).summary())
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from ecrec.report.privacy_report import to_markdown, write_privacy_report

    console = Console(stderr=True)
    with console.status("recomputing ε per merchant...") as status:
        report, paths = write_privacy_report(
            Path(args.run), on_merchant=lambda m: status.update(f"recomputing ε for {m}...")
        )
    sys.stdout.write(to_markdown(report))
    console.print("wrote " + ", ".join(str(p) for p in paths))
    return 0
