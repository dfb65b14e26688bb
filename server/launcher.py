"""``ecrec-server``: the platform operator's entry point (logic in :mod:`ecrec.deploy.server`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "ecrec-server"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a federation: start the Flower SuperLink with TLS and node "
        "authentication, register the merchants' node keys, run every round of the ecrec "
        "ServerApp, then stop everything and say what was written where.",
    )
    parser.add_argument(
        "--config", type=Path, required=True, help="server TOML (see configs/server.example.toml)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run folder from its last checkpoint"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ecrec.cli import run_guarded, set_offline_defaults

    set_offline_defaults()
    args = build_parser().parse_args(argv)

    def run() -> int:
        from rich.console import Console

        from ecrec.deploy.server import load_settings, run_server, summary_lines

        console = Console(stderr=True, soft_wrap=True)
        settings = load_settings(args.config)
        result = run_server(settings, resume=args.resume, console=console)
        for line in summary_lines(result):
            print(line)
        return 0

    return run_guarded(run, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
