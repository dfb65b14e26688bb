"""What a round of DP-SGD spends (:class:`RoundSpend`), the accountants' names and the
argument checks every accountant shares."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ecrec.errors import PrivacyError

Accountant = Literal["pld", "rdp", "prv"]
#: Every accountant, the default first.
ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp", "prv")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


@dataclass(frozen=True)
class RoundSpend:
    """What one round of local DP-SGD costs: σ, Poisson sample rate q, steps."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        sigma, q, steps = self.noise_multiplier, self.sample_rate, self.steps
        if not _is_number(sigma) or not math.isfinite(sigma) or sigma <= 0:
            raise PrivacyError(f"noise_multiplier must be a finite number > 0, got {sigma!r}")
        if not _is_number(q) or not math.isfinite(q) or not 0 < q <= 1:
            raise PrivacyError(f"sample_rate must be in (0, 1], got {q!r}")
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
            raise PrivacyError(f"steps must be an integer >= 0, got {steps!r}")
        # Normalise numpy scalars so histories serialise, hash and compare cleanly.
        object.__setattr__(self, "noise_multiplier", float(sigma))
        object.__setattr__(self, "sample_rate", float(q))
        object.__setattr__(self, "steps", int(steps))

    def as_tuple(self) -> tuple[float, float, int]:
        """The ``(noise_multiplier, sample_rate, steps)`` triple Opacus stores."""
        return (self.noise_multiplier, self.sample_rate, self.steps)


def _check_delta(delta: float) -> float:
    if not _is_number(delta) or not math.isfinite(delta) or not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
    return float(delta)


def _check_accountant(accountant: str) -> Accountant:
    if accountant not in ACCOUNTANTS:
        choices = ", ".join(ACCOUNTANTS)
        raise PrivacyError(f"accountant must be one of {choices}, got {accountant!r}")
    return accountant  # type: ignore[return-value]


def _spent_rounds(history: Iterable[RoundSpend]) -> tuple[RoundSpend, ...]:
    """The rounds that spend something, type-checked."""
    spends = []
    for spend in history:
        if not isinstance(spend, RoundSpend):
            raise PrivacyError(f"history items must be RoundSpend, got {type(spend).__name__}")
        if spend.steps > 0:
            spends.append(spend)
    return tuple(spends)
