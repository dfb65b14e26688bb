"""``ecrec privacy``: what a configuration will cost, and what a node has spent.

Heavy imports (Opacus pulls in torch) happen inside the handlers so that
building the parser for other commands stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ecrec.cli.args import one_line_errors


def register(subparsers: Any) -> None:
    """Add ``privacy plan``, ``privacy init``, ``privacy show`` and ``privacy report``."""
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
        help="Poisson sampling rate per step, in (0, 1]; Opacus' Poisson loader samples at "
        "1 / ceil(examples / batch size), not batch size / examples",
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
        # ecrec.privacy.accounting.ACCOUNTANTS, spelled out to keep Opacus out of parser setup.
        choices=("pld", "rdp", "prv"),
        default="pld",
        help="privacy accountant: pld (default, tight), rdp (cross-check) or prv; the JSON "
        "names it beside the ε",
    )
    plan.set_defaults(handler=_plan)

    _register_init(commands)

    show = one_line_errors(
        commands.add_parser(
            "show",
            help="summarise a node's privacy ledger",
            description=(
                "Verify a privacy ledger (seal, every ε, anchor) and print its summary as JSON. "
                "Read-only."
            ),
        )
    )
    show.add_argument("ledger", metavar="LEDGER", help="path to the ledger file")
    show.add_argument(
        "--key-file", metavar="F", required=True, help="the ledger's key file (node secret)"
    )
    show.add_argument(
        "--anchor", metavar="A", help="the ledger's anchor (default: the key file + .anchor)"
    )
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

    _register_audit(commands)


def _register_audit(commands: Any) -> None:
    """``privacy audit``: a membership-inference attack on a run's global ranker."""
    audit = one_line_errors(
        commands.add_parser(
            "audit",
            help="membership-inference attack on a run's global ranker (AUC, TPR at 1%% FPR, "
            "canary exposure)",
            description=(
                "Attack the run's global ranker: tell the audited merchant's training rows "
                "from held-out rows of the same merchant by their loss (and by how much "
                "training lowered it since the round-0 model), with bootstrap intervals "
                "over shoppers, and rank its planted canaries among never-inserted codes. "
                "Needs audit-ready data (ecrec data synth --audit-holdout F --canaries K). "
                "With --mirror, each row is attacked by the run that trained on it against "
                "the run that held it out, which removes the luck of the split. "
                "Writes privacy_audit.json and .md into the run folder."
            ),
            epilog="example: ecrec data synth --out data/audit --merchants 2 --canaries 8 && "
            "ecrec simulate --data data/audit --out runs/a && ecrec privacy audit runs/a",
        )
    )
    audit.add_argument("run", metavar="RUN", help="run folder")
    audit.add_argument(
        "--mirror",
        metavar="RUN2",
        help="the same federation on the mirrored split (data made with --audit-mirror): "
        "attack each row with the run that trained on it against the one that held it out",
    )
    audit.add_argument(
        "--round",
        type=int,
        metavar="R",
        help="round whose global ranker is attacked (default: last)",
    )
    audit.add_argument("--fpr", type=float, default=0.01, metavar="A", help="FPR for the TPR")
    audit.add_argument(
        "--bootstrap", type=int, default=1000, metavar="B", help="bootstrap resamples"
    )
    audit.add_argument("--device", default="cpu", help='"cpu", "cuda" or "auto"')
    audit.set_defaults(handler=_audit)


def _register_init(commands: Any) -> None:
    """``privacy init``: the merchant's explicit act that starts (or re-anchors) a ledger."""
    init = one_line_errors(
        commands.add_parser(
            "init",
            help="create a node's privacy ledger, key file and anchor (or --reanchor one)",
            description=(
                "Create a privacy ledger with its budget, a key file (32 random bytes, mode "
                "0600) unless it exists, and the rollback anchor. Refuses if the ledger or "
                "anchor exists. Keep the key file and anchor on other storage than the ledger. "
                "With --reanchor: give a verified ledger whose anchor is lost a new anchor "
                "(only if you know the ledger is current)."
            ),
        )
    )
    init.add_argument("--ledger", type=Path, required=True, metavar="PATH", help="ledger file")
    init.add_argument("--merchant", required=True, metavar="ID", help="merchant id")
    init.add_argument("--key-file", type=Path, required=True, metavar="PATH", help="node secret")
    init.add_argument(
        "--anchor", type=Path, metavar="PATH", help="anchor file (default: the key file + .anchor)"
    )
    init.add_argument("--budget-epsilon", type=float, metavar="E", help="privacy budget ε")
    init.add_argument("--delta", type=float, metavar="D", help="δ (default: 1e-5)")
    init.add_argument(
        "--accountant", metavar="A", help="privacy accountant (default: ecrec's default)"
    )
    init.add_argument(
        "--unit",
        choices=("user", "row"),
        help="privacy unit: user (all of a shopper's rows) or row (default: row, which never "
        "claims more than it knows)",
    )
    init.add_argument(
        "--encrypt", action="store_true", default=None, help="encrypt the ledger (Fernet)"
    )
    init.add_argument(
        "--reanchor", action="store_true", help="re-anchor an existing ledger whose anchor is lost"
    )
    init.set_defaults(handler=_init)


def _default_accountant() -> str:
    """The accountant ecrec uses when none is named (read from the accounting API itself,
    so this follows a change of the project default)."""
    import inspect

    from ecrec.privacy.accounting import epsilon_for_history

    return inspect.signature(epsilon_for_history).parameters["accountant"].default


def _init(args: argparse.Namespace) -> int:
    from ecrec.errors import ConfigError
    from ecrec.privacy.ledger import PrivacyLedger

    if args.reanchor:
        extra = [
            flag
            for flag, value in (
                ("--budget-epsilon", args.budget_epsilon),
                ("--delta", args.delta),
                ("--accountant", args.accountant),
                ("--unit", args.unit),
                ("--encrypt", args.encrypt),
            )
            if value is not None
        ]
        if extra:
            raise ConfigError(f"--reanchor keeps the ledger as it is; drop {', '.join(extra)}")
        ledger = PrivacyLedger.reanchor(
            args.ledger, key_file=args.key_file, merchant_id=args.merchant, anchor_path=args.anchor
        )
        print(
            f"re-anchored privacy ledger {ledger.path} (merchant {ledger.merchant_id}, "
            f"{len(ledger.rounds)} rounds, ε={ledger.spent_epsilon():.6g} under "
            f"{ledger.accountant}, δ={ledger.delta:g}, per {ledger.unit}) with new anchor "
            f"{ledger.anchor_path}"
        )
        return 0
    if args.budget_epsilon is None:
        raise ConfigError("--budget-epsilon is required (unless --reanchor)")
    key_existed = args.key_file.exists()
    ledger = PrivacyLedger.init(
        args.ledger,
        merchant_id=args.merchant,
        budget_epsilon=args.budget_epsilon,
        delta=1e-5 if args.delta is None else args.delta,
        accountant=args.accountant or _default_accountant(),
        unit=args.unit or "row",
        key_file=args.key_file,
        anchor_path=args.anchor,
        encrypt=bool(args.encrypt),
    )
    print(
        f"created privacy ledger {ledger.path}: merchant {ledger.merchant_id}, budget "
        f"ε={ledger.budget_epsilon:g} (δ={ledger.delta:g}, accountant {ledger.accountant}, "
        f"per {ledger.unit}){', encrypted' if ledger.encrypted else ''}"
    )
    if key_existed:
        print(f"used existing key file {args.key_file}")
    else:
        print(f"created key file {args.key_file} (32 random bytes, mode 0600)")
    print(f"created anchor {ledger.anchor_path}")
    if _same_device(ledger.path, ledger.anchor_path):
        print(
            "note: the anchor is on the same file system as the ledger; keep the key file and "
            "anchor on other storage, or restoring that storage rolls both back undetected",
            file=sys.stderr,
        )
    return 0


def _same_device(a: Path, b: Path) -> bool:
    try:
        return os.stat(a.parent).st_dev == os.stat(b.parent).st_dev
    except OSError:
        return False


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
    from ecrec.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger.load(
        args.ledger, key_file=Path(args.key_file), anchor_path=args.anchor and Path(args.anchor)
    )
    _print_json(ledger.summary())
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


def _audit(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ecrec.errors import ConfigError
    from ecrec.privacy.audit_run import audit_run
    from ecrec.report.privacy_audit import to_markdown
    from ecrec.runfolder import RunFolder

    if not 0 <= args.fpr < 1:
        raise ConfigError(f"--fpr must be in [0, 1), got {args.fpr}")
    if args.bootstrap < 1:
        raise ConfigError(f"--bootstrap must be >= 1, got {args.bootstrap}")
    console = Console(stderr=True)
    with console.status("loading the run...") as status:
        result = audit_run(
            Path(args.run),
            mirror=args.mirror and Path(args.mirror),
            server_round=args.round,
            device=args.device,
            fpr=args.fpr,
            n_bootstrap=args.bootstrap,
            on_status=status.update,
        )
    paths = RunFolder(args.run).write_privacy_audit(result)
    sys.stdout.write(to_markdown(result))
    console.print("wrote " + ", ".join(str(p) for p in paths))
    return 0
