"""Shared synthetic validation frames for the fairness tests (treat as read-only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecrec.data.synth import USER_SEGMENTS, SynthConfig, synthesize


@pytest.fixture(scope="session")
def validation() -> pd.DataFrame:
    """400 synthetic validation queries (10 candidates each)."""
    return synthesize(
        SynthConfig(merchants=4, queries_per_merchant=5, validation_queries=400, seed=3)
    ).validation


@pytest.fixture(scope="session")
def balanced(validation: pd.DataFrame) -> pd.DataFrame:
    """The shard with shoppers' segments drawn uniformly per query and merchant tiers
    drawn per row: every segment has ~100 queries and every query shows both tiers
    (so the ranking, not the query mix, decides provider exposure). Two merchants
    per tier, drawn per row."""
    rng = np.random.default_rng(7)
    frame = validation.copy()
    qids = pd.unique(frame["query_id"])
    segment = dict(zip(qids, rng.choice(USER_SEGMENTS, size=len(qids)), strict=True))
    frame["user_segment"] = frame["query_id"].map(segment)
    frame["merchant_tier"] = np.where(rng.random(len(frame)) < 0.5, "small", "large")
    frame["merchant_id"] = frame["merchant_tier"] + "-" + rng.integers(0, 2, len(frame)).astype(str)
    return frame
