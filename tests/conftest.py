"""Shared fixtures: one tiny ranker per session and a small synthetic marketplace.

Building even the tiny ranker costs seconds (tokenizer load, imports), so it is
built once. Tests that change its adapters or train it must take the
function-scoped ``ranker`` fixture, which restores the initial adapters and the
train/eval mode before and after each test, or build their own ranker.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from ecrec.data.synth import Marketplace, SynthConfig, synthesize
from ecrec.model.ranker import Ranker, RankerConfig, build_ranker

TINY_CONFIG = RankerConfig(architecture="cross-encoder", base_model="tiny", max_length=32, seed=0)
SMALL_MARKET = SynthConfig(
    merchants=2, queries_per_merchant=12, candidates_per_query=6, validation_queries=10, seed=0
)


@pytest.fixture(scope="session")
def tiny_config() -> RankerConfig:
    return TINY_CONFIG


@pytest.fixture(scope="session")
def _tiny_ranker_session() -> Ranker:
    return build_ranker(TINY_CONFIG, device="cpu")


@pytest.fixture(scope="session")
def tiny_initial_state(_tiny_ranker_session: Ranker) -> dict[str, np.ndarray]:
    """The freshly built tiny ranker's adapters (never mutate this dict)."""
    return _tiny_ranker_session.adapter_state()


@pytest.fixture
def ranker(
    _tiny_ranker_session: Ranker, tiny_initial_state: dict[str, np.ndarray]
) -> Iterator[Ranker]:
    """The shared tiny ranker, reset to its initial adapters and train mode."""
    shared = _tiny_ranker_session
    shared.load_adapter_state(tiny_initial_state)
    shared.model.train()
    yield shared
    shared.load_adapter_state(tiny_initial_state)
    shared.model.train()
    for param in shared.model.parameters():
        param.grad = None


@pytest.fixture(scope="session")
def market() -> Marketplace:
    """Two merchants (m00 ~100 rows, m01 ~40 rows) and a 10-query validation shard."""
    return synthesize(SMALL_MARKET)


@pytest.fixture(scope="session")
def merchant_frame(market: Marketplace) -> pd.DataFrame:
    """The largest merchant's impressions (treat as read-only)."""
    return max(market.merchants.values(), key=len)
