"""Exposure model: attention by rank, merit-based target exposure, and their ratio."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrec.fairness import provider_exposure
from ecrec.fairness.exposure import attention_at, item_exposure

LOG3 = math.log2(3)


def test_attention_models() -> None:
    ranks = np.array([1, 2, 3, 4])
    np.testing.assert_allclose(attention_at(ranks, k=3), [1, 1 / LOG3, 0.5, 0])
    np.testing.assert_allclose(
        attention_at(ranks, k=4, attention="rbp", patience=0.5), [1, 0.5, 0.25, 0.125]
    )


def _one_query(tiers: list[str], relevance: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query_id": "q",
            "merchant_tier": tiers,
            "relevance": relevance,
            "label": [int(r >= 2) for r in relevance],
        }
    )


def test_a_relevant_small_product_ranked_second_is_under_exposed() -> None:
    frame = _one_query(["large", "small"], [0, 3])
    scores = np.array([1.0, 0.0])  # the irrelevant large product first
    for attention, expected in (("log", 1 / LOG3), ("rbp", 0.5)):
        out = provider_exposure(
            frame, scores, gains=frame["relevance"], attention=attention, patience=0.5
        )
        # small gets rank 2's attention but merits rank 1's; large the reverse.
        assert out["exposure_ratio"] == pytest.approx(expected)
        assert out["exposure_ratios"]["large"] == pytest.approx(1 / expected)
        assert out["target_share"]["small"] == pytest.approx(1 / (1 + expected))


def test_equally_relevant_products_merit_equal_exposure() -> None:
    frame = _one_query(["small", "large", "large"], [2, 2, 0])
    codes, relevance = np.zeros(3, dtype=np.intp), frame["relevance"].to_numpy(float)
    exposure, target = item_exposure(codes, np.array([3.0, 2.0, 1.0]), relevance, k=10)
    np.testing.assert_allclose(target, [(1 + 1 / LOG3) / 2] * 2 + [0.5])
    np.testing.assert_allclose(exposure, [1, 1 / LOG3, 0.5])
    # Tied on score and relevance: the two share their positions' attention.
    exposure, _ = item_exposure(codes, np.array([1.0, 1.0, 0.0]), relevance, k=10)
    assert exposure[0] == exposure[1] == pytest.approx((1 + 1 / LOG3) / 2)


def test_no_merit_in_the_top_k_leaves_the_ratio_undefined() -> None:
    frame = _one_query(["large", "small"], [3, 0])
    out = provider_exposure(frame, [0.0, 1.0], k=1, gains=frame["relevance"])
    assert out["target_share"]["small"] == 0 and out["exposure_ratio"] is None
    assert out["exposure_ratios"]["large"] == 0


@st.composite
def ranked_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, np.ndarray]:
    """A few queries with graded relevance, mixed tiers and integer scores (ties allowed)."""
    rows, scores = [], []
    for q in range(draw(st.integers(1, 6))):
        for _ in range(draw(st.integers(1, 7))):
            rel = draw(st.integers(0, 3))
            rows.append(
                {
                    "query_id": f"q{q}",
                    "label": int(rel >= 2),
                    "relevance": rel,
                    "merchant_tier": draw(st.sampled_from(["small", "large"])),
                }
            )
            scores.append(draw(st.integers(-6, 6)))
    return pd.DataFrame(rows), np.asarray(scores, dtype=float)


@settings(max_examples=60, deadline=None)
@given(data=ranked_frames(), k=st.integers(1, 10), mixed_only=st.booleans())
def test_exposure_and_target_shares_sum_to_one(data, k, mixed_only) -> None:
    frame, scores = data
    result = provider_exposure(frame, scores, k=k, mixed_only=mixed_only, gains=frame["relevance"])
    for key in ("exposure_share", "target_share", "relevant_share"):
        shares = [v for v in result[key].values() if v is not None]
        if shares:
            assert sum(shares) == pytest.approx(1.0)
            assert all(0.0 <= v <= 1.0 for v in shares)


@settings(max_examples=60, deadline=None)
@given(data=ranked_frames(), k=st.integers(1, 10), attention=st.sampled_from(["log", "rbp"]))
def test_each_query_hands_out_exactly_the_attention_it_has(data, k, attention) -> None:
    """Model and target exposure distribute the same positions' attention in every query."""
    frame, scores = data
    codes, _ = pd.factorize(frame["query_id"], sort=True)
    relevance = frame["relevance"].to_numpy(float)
    exposure, target = item_exposure(
        codes.astype(np.intp), scores, relevance, k=k, attention=attention, patience=0.7
    )
    for q in np.unique(codes):
        n = int((codes == q).sum())
        available = attention_at(np.arange(1, n + 1), k=k, attention=attention, patience=0.7)
        assert exposure[codes == q].sum() == pytest.approx(available.sum())
        assert target[codes == q].sum() == pytest.approx(available.sum())


@settings(max_examples=40, deadline=None)
@given(data=ranked_frames(), k=st.integers(1, 10))
def test_ranking_by_relevance_exposes_every_group_as_merited(data, k) -> None:
    frame, _ = data
    relevance = frame["relevance"].to_numpy(float)
    result = provider_exposure(frame, relevance, k=k, mixed_only=False, gains=relevance)
    for ratio in result["exposure_ratios"].values():
        assert ratio is None or ratio == pytest.approx(1.0)
