"""What crosses the node's boundary in a round: the server's request, the node's outcome,
and the checks an update passes before it is released."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ecrec.errors import EcrecError

if TYPE_CHECKING:
    from ecrec.config import RunConfig
    from ecrec.model.ranker import Ranker


class UpdateRejectedError(EcrecError):
    """The local update cannot be sent safely (non-finite, or SecAgg+ would clip it)."""


@dataclass(frozen=True)
class RoundRequest:
    """What the server asks of this node for one round."""

    server_round: int
    config: RunConfig
    #: The global adapter: named arrays, or Flower's list in the ranker's own order.
    global_state: Mapping[str, np.ndarray] | Sequence[np.ndarray]
    proximal_mu: float = 0.0


@dataclass
class RoundOutcome:
    """A node's answer to one round: a released update, or a decline with its reason."""

    state: dict[str, np.ndarray] | None
    weight: float = 0.0
    #: Exactly the scalars that leave the node with the update.
    disclosed: dict[str, bool | int | float | str] = field(default_factory=dict)
    #: What the server is told when the node declines.
    decline_reason: str | None = None

    @property
    def declined(self) -> bool:
        return self.state is None


def check_weight(*, weight: float, secagg: bool, max_weight: float) -> None:
    """Refuse before training (and before spending ε) if SecAgg+ would overflow."""
    if secagg and weight > max_weight:
        raise UpdateRejectedError(
            f"weight {weight:g} exceeds federation.max-weight={max_weight:g}; SecAgg+ "
            "would overflow: raise max-weight on the server"
        )


def check_update(
    state: Mapping[str, np.ndarray],
    *,
    weight: float,
    secagg: bool,
    max_weight: float,
    clipping_range: float,
) -> None:
    """Refuse an update that is non-finite or that SecAgg+ would silently clip.

    SecAgg+ multiplies each value by ``weight / max_weight`` and clips to
    ``±clipping_range`` without telling anyone (ENVIRONMENT.md); we check first
    so a round fails loudly instead of aggregating a distorted model.
    """
    for name, array in state.items():
        if not np.all(np.isfinite(array)):
            raise UpdateRejectedError(f"update has non-finite values in {name}")
    if not secagg:
        return
    check_weight(weight=weight, secagg=secagg, max_weight=max_weight)
    ratio = weight / max_weight
    peak_name, peak = max(
        ((name, float(np.max(np.abs(a)))) for name, a in state.items() if a.size),
        key=lambda item: item[1],
    )
    if peak * ratio > clipping_range:
        raise UpdateRejectedError(
            f"update value {peak:.4g} in {peak_name} times weight {ratio:.4g} exceeds the "
            f"SecAgg+ clipping range {clipping_range:g}; SecAgg+ would clip it silently"
        )


def _named(
    ranker: Ranker, state: Mapping[str, np.ndarray] | Sequence[np.ndarray]
) -> Mapping[str, np.ndarray]:
    if isinstance(state, Mapping):
        return state
    names = list(ranker.adapter_state())
    if len(names) != len(state):
        raise UpdateRejectedError(
            f"the server sent {len(state)} arrays; this node's ranker has {len(names)}"
        )
    return dict(zip(names, state, strict=True))
