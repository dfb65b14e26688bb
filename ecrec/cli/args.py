"""Argument helpers shared by the command groups."""

from __future__ import annotations

import argparse
import types
from typing import NoReturn


def _one_line_error(self: argparse.ArgumentParser, message: str) -> NoReturn:
    """Bad arguments: one line on stderr and exit 2, without the usage block."""
    self.exit(2, f"{self.prog}: error: {message}\n")


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report bad arguments as one line (DESIGN.md: no usage dumps)."""
    parser.error = types.MethodType(_one_line_error, parser)  # type: ignore[method-assign]
    return parser


def round_number(text: str) -> int:
    """An argparse type for a run's round number (>= 0)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a round number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a round number >= 0, got {text!r}")
    return value
