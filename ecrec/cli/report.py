"""``ecrec report RUN``: the self-contained HTML report of a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write RUN/report.html (self-contained, opens offline)",
        description="Write a self-contained HTML report of a run folder: metric curves, "
        "per-merchant NDCG, privacy budgets, fairness audit and SHAP explanations.",
    )
    parser.add_argument("run", type=Path, help="run folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ecrec.errors import EcrecError
    from ecrec.report.html import write_report

    if not args.run.is_dir():
        raise EcrecError(f"{args.run}: not a run folder")
    console = Console(stderr=True)
    with console.status("building report..."):
        path = write_report(args.run)
    console.print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0
