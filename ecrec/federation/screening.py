"""Plain mode only: the server's checks of each merchant's update before aggregating it.

Without SecAgg+ the server sees every update in the clear, so it can refuse the ones
that are broken or blatantly hostile instead of letting one merchant wreck the global
model. An update is dropped, with a reason naming the merchant, when:

* its ``merchant`` name is not a merchant id (a safe name), or another reply of the same
  round already used it (a node must not stand in for another merchant, or count twice);
* its arrays cannot be decoded, or their number, shapes or dtypes differ from the global
  model's (Flower's legacy path keeps only the order of the arrays, not their keys, so a
  renamed key shows up as a wrong count or shape);
* a value is NaN or ±Inf;
* its weight is not the one the run's weighting allows: exactly 1 with uniform weighting
  (what an honest node sends), an integer from 1 to ``max-weight`` with example weighting;
* its distance from the global model is more than :data:`NORM_FACTOR` times the median
  distance of the *other* updates of the round (leave-one-out, so two updates are enough
  to catch a blown-up one: a 100x update is dropped, its honest peer kept).

**What these checks cannot detect** (and nothing can in the clear without a trusted
reference): a poisoned update of ordinary size and shape -- a label-flipping merchant, a
backdoor trained into its own data, a small-norm push in a chosen direction, arrays of
equal shape sent in swapped order, a free rider that returns the global model unchanged --
or a hostile majority, which moves the median itself. A round with a single update has
nothing to compare its size with. Under SecAgg+ none of this is visible at all: the server
sees only the sum (``check_update`` on each node refuses non-finite and clipped values
before masking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.common import FitRes, parameters_to_ndarrays
from flwr.server.client_proxy import ClientProxy

from ecrec.data.schema import is_safe_name, short_repr

#: An update farther from the global model than this times the others' median is dropped.
NORM_FACTOR = 10.0


@dataclass(frozen=True)
class Rejection:
    """One dropped update: who sent it (its merchant name, or its node id) and why."""

    merchant: str
    reason: str

    def __str__(self) -> str:
        return f"{self.merchant}: {self.reason}"


Result = tuple[ClientProxy, FitRes]


def _who(proxy: ClientProxy, res: FitRes) -> tuple[str, str | None]:
    """The merchant name a reply gives, and a problem with it (``None`` if it is fine)."""
    claimed = res.metrics.get("merchant")
    if claimed is None:
        return f"node {proxy.node_id}", "no merchant name"
    if not is_safe_name(claimed):
        return f"node {proxy.node_id}", f"merchant name {short_repr(claimed)} is not a merchant id"
    return str(claimed), None


def _array_problem(arrays: list[np.ndarray], reference: list[np.ndarray]) -> str | None:
    if len(arrays) != len(reference):
        return f"update has {len(arrays)} arrays, the global model {len(reference)}"
    for index, (array, ref) in enumerate(zip(arrays, reference, strict=True)):
        if array.shape != ref.shape:
            return f"update array {index} has shape {array.shape}, expected {ref.shape}"
        if array.dtype.kind != "f":
            return f"update array {index} has dtype {array.dtype}, expected a float dtype"
    for index, array in enumerate(arrays):
        if not np.all(np.isfinite(array)):
            return f"update array {index} has non-finite values (NaN or Inf)"
    return None


def _weight_problem(res: FitRes, *, weighting: str, max_weight: float) -> str | None:
    weight: Any = res.num_examples
    if isinstance(weight, bool) or not isinstance(weight, int | np.integer):
        return f"weight {short_repr(weight)} is not an integer"
    if weighting == "uniform":
        return None if weight == 1 else f"weight {weight}, but uniform weighting takes 1"
    if weight < 1 or (max_weight > 0 and weight > max_weight):
        bound = f"1 to federation.max-weight={max_weight:g}" if max_weight > 0 else ">= 1"
        return f"weight {weight} is outside {bound}"
    return None


def _distance(arrays: list[np.ndarray], reference: list[np.ndarray]) -> float:
    total = sum(
        float(np.sum((a.astype(np.float64) - r.astype(np.float64)) ** 2))
        for a, r in zip(arrays, reference, strict=True)
    )
    return float(np.sqrt(total))


def screen_updates(
    results: list[Result],
    *,
    reference: list[np.ndarray],
    weighting: str = "uniform",
    max_weight: float = 0.0,
) -> tuple[list[Result], list[Rejection]]:
    """The results to aggregate, and one :class:`Rejection` per dropped update (module
    docstring). ``reference`` is the global model the round started from."""
    reference = [np.asarray(r) for r in reference]
    rejected: list[Rejection] = []
    candidates: list[tuple[Result, str, float]] = []
    seen: dict[str, int] = {}
    for proxy, res in results:
        who, problem = _who(proxy, res)
        if problem is None and who in seen:
            problem = f"merchant {who} already answered this round (node {seen[who]})"
        if problem is None:
            problem = _weight_problem(res, weighting=weighting, max_weight=max_weight)
        arrays: list[np.ndarray] = []
        if problem is None:
            try:
                arrays = [np.asarray(a) for a in parameters_to_ndarrays(res.parameters)]
            except Exception as err:  # any bytes can arrive: numpy raises many kinds
                problem = f"update cannot be decoded ({type(err).__name__})"
        if problem is None:
            problem = _array_problem(arrays, reference)
        if problem is not None:
            rejected.append(Rejection(who, problem))
            continue
        seen[who] = proxy.node_id
        candidates.append(((proxy, res), who, _distance(arrays, reference)))
    kept: list[Result] = []
    for index, (result, who, distance) in enumerate(candidates):
        others = [d for j, (_, _, d) in enumerate(candidates) if j != index]
        median = float(np.median(others)) if others else 0.0
        if median > 0 and distance > NORM_FACTOR * median:
            rejected.append(
                Rejection(
                    who,
                    f"update norm {distance:.4g} is over {NORM_FACTOR:g}x the median "
                    f"{median:.4g} of the other updates",
                )
            )
        else:
            kept.append(result)
    return kept, rejected


__all__ = ["NORM_FACTOR", "Rejection", "screen_updates"]
