"""Privacy loss distributions through dp_accounting: one round's PLD, grid guards, and
composition from a cache of history prefixes (see :mod:`ecrec.privacy.accounting`)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache

from dp_accounting.pld import privacy_loss_distribution as pld_lib
from dp_accounting.pld import privacy_loss_mechanism

from ecrec.errors import PrivacyError
from ecrec.privacy.rdp import _rdp_epsilon
from ecrec.privacy.spend import RoundSpend

#: Privacy-loss grid interval of the PLD accountant (see :mod:`ecrec.privacy.accounting`).
PLD_DISCRETIZATION = 1e-4

#: Largest one-round PLD grid we let dp_accounting build (a Python loop over the
#: points: about 4 s at 2**20). Needs it only when σ is far below 0.5.
PLD_MAX_ROUND_GRID = 2**20

#: Largest composed PLD grid we let dp_accounting build (estimated from the RDP ε
#: at δ = 1e-15, the tail it keeps; ~70 MB and several seconds at 2**23). Only
#: histories with an ε in the hundreds need more.
PLD_MAX_GRID = 2**23

#: The tail mass dp_accounting truncates when composing (its default).
_PLD_TAIL_DELTA = 1e-15

_Pld = pld_lib.PrivacyLossDistribution


def _check_round_grid(spend: RoundSpend) -> None:
    """Refuse a round whose one-step PLD grid would take long to build."""
    widest = 0.0
    for adjacency in (
        privacy_loss_mechanism.AdjacencyType.REMOVE,
        privacy_loss_mechanism.AdjacencyType.ADD,
    ):
        bounds = privacy_loss_mechanism.GaussianPrivacyLoss(
            spend.noise_multiplier, sampling_prob=spend.sample_rate, adjacency_type=adjacency
        ).connect_dots_bounds()
        widest = max(widest, bounds.epsilon_upper - bounds.epsilon_lower)  # type: ignore[operator]
    points = widest / PLD_DISCRETIZATION
    if not points <= PLD_MAX_ROUND_GRID:
        raise PrivacyError(
            f"the pld accountant would need a grid of ~{points:.2g} points for a round with "
            f"σ={spend.noise_multiplier:g}, q={spend.sample_rate:g} (too little noise: its ε "
            "is enormous); use the rdp accountant"
        )


def _check_history_grid(spends: Sequence[RoundSpend]) -> None:
    """Refuse a history whose composed PLD grid would be huge (ε in the hundreds)."""
    points = _rdp_epsilon(spends, delta=_PLD_TAIL_DELTA) / PLD_DISCRETIZATION
    if not points <= PLD_MAX_GRID:
        raise PrivacyError(
            f"the pld accountant would need a grid of ~{points:.2g} points for this history "
            "(too little noise: its ε is enormous); use the rdp accountant"
        )


@lru_cache(maxsize=4)
def _round_pld(spend: RoundSpend) -> _Pld:
    """One round's PLD: what PLDAccountant composes for ``steps`` Poisson-sampled Gaussians."""
    _check_round_grid(spend)
    one_step = pld_lib.from_gaussian_mechanism(
        standard_deviation=spend.noise_multiplier,
        sampling_prob=spend.sample_rate,
        value_discretization_interval=PLD_DISCRETIZATION,
        pessimistic_estimate=True,
    )
    return one_step.self_compose(spend.steps)


class _PrefixCache:
    """The last few composed histories, so that a history plus one round composes one round.

    Composition is always a left fold from the identity in history order, so a
    history's PLD is the same object however it was reached (bit-identical ε).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[RoundSpend, ...], _Pld] = OrderedDict()
        self._lock = threading.Lock()

    def longest_prefix(self, spends: tuple[RoundSpend, ...]) -> tuple[int, _Pld | None]:
        with self._lock:
            best: tuple[int, _Pld | None] = (0, None)
            for key, value in self._entries.items():
                if best[0] < len(key) <= len(spends) and spends[: len(key)] == key:
                    best = (len(key), value)
            if best[1] is not None:
                self._entries.move_to_end(spends[: best[0]])
            return best

    def put(self, spends: tuple[RoundSpend, ...], value: _Pld) -> None:
        with self._lock:
            self._entries[spends] = value
            self._entries.move_to_end(spends)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_PLD_PREFIXES = _PrefixCache(size=4)


def _compose_plds(spends: tuple[RoundSpend, ...], *, every_round: bool) -> list[_Pld]:
    """The composed PLD of ``spends``, or (``every_round``) the PLD after each of its rounds.

    Without ``every_round`` the composition starts from the longest cached prefix.
    """
    start, composed = (0, None) if every_round else _PLD_PREFIXES.longest_prefix(spends)
    if start == len(spends) and composed is not None:
        return [composed]
    _check_history_grid(spends)
    if composed is None:
        composed = pld_lib.identity(value_discretization_interval=PLD_DISCRETIZATION)
    out = []
    for spend in spends[start:]:
        composed = composed.compose(_round_pld(spend))
        out.append(composed)
    _PLD_PREFIXES.put(spends, composed)
    return out


def _pld_epsilon(composed: _Pld, *, delta: float) -> float:
    return float(composed.get_epsilon_for_delta(delta))
