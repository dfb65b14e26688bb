"""Seeded draws shared by the builders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _choice(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _sample(
    rng: np.random.Generator, pool: Sequence[int], n: int, weights: Sequence[float] | None = None
) -> list[int]:
    n = min(n, len(pool))
    if n <= 0:
        return []
    p = None
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        p = w / w.sum()
    return [int(pool[int(i)]) for i in rng.choice(len(pool), size=n, replace=False, p=p)]


def _bounded(rng: np.random.Generator, indices: list[int], limit: int) -> list[int]:
    if len(indices) <= limit:
        return indices
    picked = np.sort(rng.choice(len(indices), size=limit, replace=False))
    return [indices[int(j)] for j in picked]
