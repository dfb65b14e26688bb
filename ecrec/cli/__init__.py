"""The ``ecrec`` command line.

Each command group lives in its own module with a ``register(subparsers)``
function; handlers take the parsed namespace and return an exit code. This
module owns error handling: an :class:`~ecrec.errors.EcrecError` becomes one
line on stderr and its exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from ecrec.errors import EcrecError

#: Command-group modules, imported lazily so ``ecrec --help`` stays fast.
COMMAND_MODULES: tuple[str, ...] = (
    "ecrec.cli.data",
    "ecrec.cli.privacy",
    "ecrec.cli.train",
    "ecrec.cli.simulate",
    "ecrec.cli.explain",
    "ecrec.cli.audit",
    "ecrec.cli.report",
    "ecrec.cli.certs",
)


def set_offline_defaults() -> None:
    """No model hub, no telemetry, no update checks (DESIGN.md invariants)."""
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ.setdefault(key, value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecrec",
        description="Privacy-preserving federated training for e-commerce search ranking.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # a command group not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def run_guarded(func: Callable[[], int], *, prog: str) -> int:
    """Run ``func``, turning user errors into one line and an exit code."""
    try:
        return func()
    except EcrecError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # the system refused: disk full, read-only, permissions, a file
        # where a folder must be. The user's to fix, not a bug: one line naming the file.
        print(f"{prog}: error: {os_error_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: say so in one line, full trace on request
        if os.environ.get("ECREC_DEBUG"):
            raise
        print(
            f"{prog}: internal error: {type(err).__name__}: {err} "
            "(set ECREC_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def os_error_line(err: OSError) -> str:
    """``PATH: reason`` for an ``OSError`` (the target, not the temp file, of a rename)."""
    where = err.filename2 if err.filename2 is not None else err.filename
    reason = err.strerror or str(err)
    return f"{os.fsdecode(where)}: {reason}" if where is not None else reason


def main(argv: Sequence[str] | None = None) -> int:
    set_offline_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(lambda: int(args.handler(args) or 0), prog="ecrec")


if __name__ == "__main__":
    sys.exit(main())
