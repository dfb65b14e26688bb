"""Fixtures for the explanation tests.

Fast tests use the tiny random ranker with perturbed adapters (so scores vary
by tenths of a logit and additivity is a real check, not 0 == 0). The first
explanation in a process pays shap's numba compilation (seconds); after that a
tiny-ranker explanation takes well under a second.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from ecrec.data.synth import SynthConfig, synthesize
from ecrec.model.ranker import Ranker


@pytest.fixture
def varied(ranker: Ranker) -> Iterator[Ranker]:
    """The shared tiny ranker with random adapters large enough to move scores.

    The ``ranker`` fixture restores the original adapters afterwards.
    """
    rng = np.random.default_rng(1)
    ranker.load_adapter_state(
        {
            name: (a + rng.normal(0, 0.5, a.shape)).astype(np.float32)
            for name, a in ranker.adapter_state().items()
        }
    )
    ranker.model.eval()
    yield ranker


@pytest.fixture(scope="module")
def shard() -> pd.DataFrame:
    return synthesize(
        SynthConfig(
            merchants=2, queries_per_merchant=12, candidates_per_query=6, validation_queries=10
        )
    ).validation
