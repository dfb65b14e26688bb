"""Argument helpers shared by the command groups."""

from __future__ import annotations

import argparse
import types
from typing import Any, NoReturn


def _one_line_error(self: argparse.ArgumentParser, message: str) -> NoReturn:
    """Bad arguments: one line on stderr and exit 2, without the usage block."""
    self.exit(2, f"{self.prog}: error: {message}\n")


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report bad arguments as one line (DESIGN.md: no usage dumps)."""
    parser.error = types.MethodType(_one_line_error, parser)  # type: ignore[method-assign]
    return parser


def _parsed(kind: type, text: str, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _refuse(message: str) -> NoReturn:
    raise argparse.ArgumentTypeError(message)


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = _parsed(int, text, "a whole number")
    return value if value >= 1 else _refuse(f"must be at least 1, got {value}")


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    value = _parsed(int, text, "a whole number")
    return value if value >= 0 else _refuse(f"must not be negative, got {value}")


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    value = _parsed(float, text, "a number")
    return value if value > 0 else _refuse(f"must be positive, got {value}")


def fraction(text: str) -> float:
    """An argparse type: a share in [0, 1)."""
    value = _parsed(float, text, "a number")
    return value if 0 <= value < 1 else _refuse(f"must be at least 0 and below 1, got {value}")


def open_fraction(text: str) -> float:
    """An argparse type: a share in (0, 1)."""
    value = _parsed(float, text, "a number")
    return value if 0 < value < 1 else _refuse(f"must be between 0 and 1 (exclusive), got {value}")


def round_number(text: str) -> int:
    """An argparse type for a run's round number (>= 0)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a round number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a round number >= 0, got {text!r}")
    return value
