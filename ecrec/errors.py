"""User-facing errors.

Anything raised as an :class:`EcrecError` is a problem with the user's input or
environment; the CLI prints its message on one line and exits non-zero, with no
traceback. Anything else is a bug.
"""

from __future__ import annotations


class EcrecError(Exception):
    """An error the user can fix; ``str(err)`` names what is wrong and where."""

    exit_code: int = 2


class ConfigError(EcrecError):
    """A configuration file or option is invalid."""


class DataError(EcrecError):
    """An input data file breaks the data contract or cannot be read."""


class ModelError(EcrecError):
    """The base model cannot be found or loaded offline."""


class PrivacyError(EcrecError):
    """Base class for privacy-accounting failures."""


class BudgetExceededError(PrivacyError):
    """A planned round would take a merchant past its privacy budget."""

    exit_code = 3


class LedgerCorruptError(PrivacyError):
    """A privacy ledger failed its integrity check; the node must not train."""

    exit_code = 4


class LedgerMissingError(PrivacyError):
    """A privacy ledger (or its rollback anchor) is not there; the node must not train.

    Never answered by starting a fresh ledger: that would grant a fresh budget.
    """

    exit_code = 4


class LedgerExistsError(PrivacyError):
    """``ecrec privacy init`` refuses to start a ledger over an existing ledger or anchor."""


def toml_problem(err: Exception) -> str:
    """Why ``tomllib`` refused a file, in one line: besides ``TOMLDecodeError`` it raises
    a plain ``ValueError`` for an integer of more than 4300 digits and ``RecursionError``
    for arrays nested too deeply. Loaders catch ``(ValueError, RecursionError)``."""
    if isinstance(err, RecursionError):
        return "arrays or tables nested too deeply"
    return one_line(str(err), limit=200)


def one_line(message: str, *, limit: int = 500) -> str:
    """``message`` on one line of at most ``limit`` characters (a value it quotes may be
    a whole huge field of the user's file)."""
    text = " ".join(message.split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
