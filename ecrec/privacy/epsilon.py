"""ε of a history under any accountant: the total, and the trajectory after each round."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ecrec.errors import PrivacyError
from ecrec.privacy.pld import _compose_plds, _pld_epsilon
from ecrec.privacy.prv import _prv_epsilon
from ecrec.privacy.rdp import RDP_ORDERS, _rdp_curve, _rdp_epsilon, _rdp_to_epsilon
from ecrec.privacy.spend import (
    Accountant,
    RoundSpend,
    _check_accountant,
    _check_delta,
    _spent_rounds,
)


def _guarded(accountant: str, compute: Callable[[], Any]) -> Any:
    """Run a library computation; its numerical failures become one-line PrivacyErrors."""
    try:
        # Opacus warns when the optimal RDP order is at the edge of the grid (the bound
        # is still valid); PRV/PLD overflow harmlessly for tiny σ (→ ε = inf).
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", UserWarning)
            return compute()
    except (ValueError, OverflowError, FloatingPointError, ZeroDivisionError) as err:
        raise PrivacyError(f"{accountant} accountant failed for this history: {err}") from err


def _checked(accountant: str, eps: float) -> float:
    if math.isnan(eps):
        raise PrivacyError(f"{accountant} accountant returned NaN for this history")
    return eps


def epsilon_for_history(
    history: Sequence[RoundSpend],
    *,
    delta: float,
    accountant: Accountant = "pld",
) -> float:
    """ε after composing every round in ``history`` at ``delta`` (0.0 if nothing was spent)."""
    delta = _check_delta(delta)
    accountant = _check_accountant(accountant)
    spends = _spent_rounds(history)
    if not spends:
        return 0.0
    if accountant == "pld":
        last = lambda: _compose_plds(spends, every_round=False)[-1]  # noqa: E731
        eps = _guarded("pld", lambda: _pld_epsilon(last(), delta=delta))
    elif accountant == "rdp":
        eps = _guarded("rdp", lambda: _rdp_epsilon(spends, delta=delta))
    else:
        eps = _guarded("prv", lambda: _prv_epsilon(spends, delta=delta))
    return _checked(accountant, eps)


def epsilon_trajectory(
    history: Sequence[RoundSpend],
    *,
    delta: float,
    accountant: Accountant = "pld",
) -> list[float]:
    """Cumulative ε after each round of ``history`` (the same values as
    :func:`epsilon_for_history` on each prefix).

    PLD and RDP compose incrementally, round by round, in the order
    :func:`epsilon_for_history` composes, so the values are bit-identical and
    the cost is one composition per round. PRV has no such shortcut and
    recomputes each prefix.
    """
    delta = _check_delta(delta)
    accountant = _check_accountant(accountant)
    history = list(history)
    spends = _spent_rounds(history)
    if accountant == "prv":
        return [
            epsilon_for_history(history[: i + 1], delta=delta, accountant="prv")
            for i in range(len(history))
        ]
    per_spend: list[float]
    if accountant == "pld":
        per_spend = _guarded(
            "pld",
            lambda: [
                _pld_epsilon(composed, delta=delta)
                for composed in _compose_plds(spends, every_round=True)
            ],
        )
    else:
        per_spend = []
        total = np.zeros(len(RDP_ORDERS))
        for spend in spends:
            total = total + _rdp_curve(spend)
            per_spend.append(_guarded("rdp", lambda t=total: _rdp_to_epsilon(t, delta=delta)))
    out: list[float] = []
    done = 0
    for spend in history:
        done += spend.steps > 0
        out.append(_checked(accountant, per_spend[done - 1]) if done else 0.0)
    return out
