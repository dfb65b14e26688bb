"""``ecrec-client``: a merchant's entry point (logic in :mod:`ecrec.deploy.client`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "ecrec-client"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Join a federation as a merchant node (a Flower SuperNode). Your data, "
        "privacy budget and ledger stay on this machine; only masked model updates leave it.",
    )
    parser.add_argument("--server", required=True, metavar="HOST:PORT", help="the ecrec-server")
    parser.add_argument("--data", type=Path, required=True, help="your impressions parquet")
    parser.add_argument(
        "--budget-epsilon",
        type=float,
        required=True,
        metavar="E",
        help="your privacy budget ε; this node refuses rounds that would exceed it",
    )
    parser.add_argument("--key", type=Path, help="this node's private key (ecrec certs node-key)")
    parser.add_argument("--ca", type=Path, help="the server operator's ca.crt")
    parser.add_argument(
        "--ledger", type=Path, help="privacy ledger (default: next to --data, .ledger.json)"
    )
    parser.add_argument("--ledger-key-file", type=Path, help="encrypt the ledger with this key")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plain HTTP, no node authentication (only for a server with insecure = true)",
    )
    parser.add_argument(
        "--log-file", type=Path, help="SuperNode log (default: next to --data, .supernode.log)"
    )
    parser.add_argument(
        "--runtime-port",
        type=int,
        default=0,
        help="local port of the SuperNode's runtime API (default: any free port)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up if the server is unreachable this long at start-up (0: wait for ever)",
    )
    parser.add_argument("--verbose", action="store_true", help="echo the SuperNode's log")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ecrec.cli import run_guarded, set_offline_defaults

    set_offline_defaults()
    args = build_parser().parse_args(argv)

    def run() -> int:
        from ecrec.deploy.client import ClientSettings, default_ledger, run_client
        from ecrec.deploy.net import parse_address
        from ecrec.deploy.processes import Interrupted

        def absolute(path: Path | None) -> Path | None:
            return path.expanduser().resolve() if path is not None else None

        data = args.data.expanduser().resolve()
        settings = ClientSettings(
            server=parse_address(args.server, what="--server"),
            data=data,
            budget_epsilon=args.budget_epsilon,
            key=absolute(args.key),
            ca=absolute(args.ca),
            insecure=args.insecure,
            ledger=absolute(args.ledger) or default_ledger(data),
            ledger_key_file=absolute(args.ledger_key_file),
            log_file=absolute(args.log_file) or data.with_suffix(".supernode.log"),
            runtime_port=args.runtime_port,
            connect_timeout=args.connect_timeout,
            verbose=args.verbose,
        )
        try:
            return run_client(settings)
        except Interrupted as stop:
            print(f"{PROG}: stopped by {stop.name}; the SuperNode has shut down", file=sys.stderr)
            return stop.exit_code

    return run_guarded(run, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
