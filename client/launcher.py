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
        "privacy policy, budget and ledger stay on this machine; only masked model updates "
        "leave it, and only the ecrec ClientApp installed here ever runs on it.",
    )
    parser.add_argument("--server", required=True, metavar="HOST:PORT", help="the ecrec-server")
    parser.add_argument("--data", type=Path, required=True, help="your impressions parquet")
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="your node policy (TOML, [policy] table; default: the built-in policy)",
    )
    parser.add_argument(
        "--budget-epsilon",
        type=float,
        metavar="E",
        help="your privacy budget ε (overrides the policy's); this node refuses rounds "
        "that would exceed it",
    )
    parser.add_argument("--key", type=Path, help="this node's private key (ecrec certs node-key)")
    parser.add_argument("--ca", type=Path, help="the server operator's ca.crt")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plain HTTP, no node authentication (only for a server with insecure = true)",
    )
    parser.add_argument(
        "--ledger", type=Path, help="privacy ledger (default: next to --data, .ledger.json)"
    )
    parser.add_argument(
        "--ledger-key-file",
        type=Path,
        metavar="PATH",
        help="the node secret that seals the ledger (default: LEDGER.key); keep it, and the "
        "anchor, on other storage than the ledger",
    )
    parser.add_argument(
        "--ledger-anchor",
        type=Path,
        metavar="PATH",
        help="the ledger's rollback anchor (default: KEY_FILE.anchor)",
    )
    parser.add_argument(
        "--init-ledger",
        action="store_true",
        help="create the privacy ledger (and key file) now, from the policy and the data; "
        "refused if it exists. Without it a missing ledger is an error",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        metavar="PATH",
        help="this node's own journal of rounds, declines and refusals "
        "(default: next to --data, .journal.jsonl)",
    )
    parser.add_argument(
        "--trusted-fab-sha256",
        action="append",
        default=[],
        metavar="HEX",
        help="also refuse any app bundle (FAB) whose SHA-256 is not one of these (repeatable)",
    )
    parser.add_argument(
        "--log-file", type=Path, help="SuperNode log (default: next to --data, .supernode.log)"
    )
    parser.add_argument(
        "--runtime-port",
        type=int,
        default=0,
        help="local port of the SuperNode's runtime API on 127.0.0.1 (default: any free port)",
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
        from ecrec.deploy.client import (
            ClientSettings,
            default_journal,
            default_key_file,
            default_ledger,
            default_ledger_anchor,
            run_client,
        )
        from ecrec.deploy.net import parse_address
        from ecrec.deploy.processes import Interrupted

        def absolute(path: Path | None) -> Path | None:
            return path.expanduser().resolve() if path is not None else None

        data = args.data.expanduser().resolve()
        ledger = absolute(args.ledger) or default_ledger(data)
        key_file = absolute(args.ledger_key_file) or default_key_file(ledger)
        settings = ClientSettings(
            server=parse_address(args.server, what="--server"),
            data=data,
            key=absolute(args.key),
            ca=absolute(args.ca),
            insecure=args.insecure,
            ledger=ledger,
            ledger_key_file=key_file,
            ledger_anchor=absolute(args.ledger_anchor) or default_ledger_anchor(key_file),
            journal=absolute(args.journal) or default_journal(data),
            log_file=absolute(args.log_file) or data.with_suffix(".supernode.log"),
            policy_file=absolute(args.policy),
            budget_epsilon=args.budget_epsilon,
            init_ledger=args.init_ledger,
            trusted_fab_sha256=tuple(p.strip().lower() for p in args.trusted_fab_sha256),
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
