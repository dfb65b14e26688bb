"""Importing and running shap quietly and reproducibly."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np


def import_shap() -> Any:
    """Import shap quietly: its colour maps trip a matplotlib PendingDeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

    return shap


@contextlib.contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for the block, then restore it.

    shap's Partition explainer breaks priority ties with ``np.random.randn``;
    when ``max_evals`` cuts the recursion short, the tie order decides which
    clusters get expanded, so an unseeded run is not reproducible.
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)
