"""Rényi DP through Opacus: per-step curves at :data:`RDP_ORDERS`, composed and converted to ε."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from opacus.accountants.analysis import rdp as rdp_analysis

from ecrec.privacy.spend import RoundSpend

#: RDP orders: Opacus' default fractional orders (written as Opacus and dp_accounting
#: write them, so the floats are identical), every integer 11..63, and a long tail.
RDP_ORDERS: tuple[float, ...] = (
    *(1 + x / 10.0 for x in range(1, 100)),
    *map(float, range(11, 64)),
    80.0,
    96.0,
    128.0,
    192.0,
    256.0,
    384.0,
    512.0,
    1024.0,
)


@lru_cache(maxsize=256)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """One step's RDP curve at :data:`RDP_ORDERS` (read-only; Opacus scales it by steps)."""
    curve = np.asarray(
        rdp_analysis.compute_rdp(
            q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(RDP_ORDERS)
        ),
        dtype=float,
    )
    curve.setflags(write=False)
    return curve


def _rdp_curve(spend: RoundSpend) -> np.ndarray:
    # Opacus' compute_rdp is the one-step curve times steps: same floats.
    return _rdp_per_step(spend.noise_multiplier, spend.sample_rate) * spend.steps


def _rdp_to_epsilon(curve: np.ndarray, *, delta: float) -> float:
    with warnings.catch_warnings():
        # "Optimal order is the largest alpha": the bound is valid, just not tight.
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ORDERS), rdp=curve, delta=delta)
    return max(0.0, float(eps))


def _rdp_epsilon(spends: Sequence[RoundSpend], *, delta: float) -> float:
    total = sum((_rdp_curve(spend) for spend in spends), start=np.zeros(len(RDP_ORDERS)))
    return _rdp_to_epsilon(total, delta=delta)
