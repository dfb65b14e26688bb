"""Partitions keep every row exactly once, never split a query, and skew as alpha says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrec.data.io import validate_frame
from ecrec.data.partition import partition_by_merchant, partition_dirichlet
from ecrec.errors import ConfigError, DataError

CATEGORIES = ["sofa", "mug", "lamp", "rug", "dress", "jeans"]


def make_impressions(query_sizes: list[int], *, seed: int = 0) -> pd.DataFrame:
    """A minimal contract-shaped frame: one row per (query, candidate)."""
    rng = np.random.default_rng(seed)
    rows = []
    for q, size in enumerate(query_sizes):
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        for c in range(size):
            rows.append(
                {
                    "query_id": f"q{q}",
                    "query": f"{category} {q}",
                    "product_id": f"p{c}",
                    "product_title": f"Product {c}",
                    "product_text": f"category: {category}",
                    "merchant_id": "source",
                    "label": int(c == 0),
                    "user_segment": "unknown",
                    "merchant_tier": "small",
                    "relevance": 3 if c == 0 else 0,
                    "category": category if c == 0 else CATEGORIES[c % len(CATEGORIES)],
                }
            )
    return pd.DataFrame(rows)


frames = st.builds(
    make_impressions,
    st.lists(st.integers(1, 5), min_size=4, max_size=40),
    seed=st.integers(0, 1000),
)


def _row_keys(df: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(zip(df["query_id"], df["product_id"], strict=True))


@settings(max_examples=60, deadline=None)
@given(
    df=frames,
    n_merchants=st.integers(1, 4),
    alpha=st.floats(0.05, 50.0),
    seed=st.integers(0, 2**16),
    by=st.sampled_from(["query", "category"]),
)
def test_every_row_lands_once_and_queries_are_never_split(
    df: pd.DataFrame, n_merchants: int, alpha: float, seed: int, by: str
) -> None:
    shards = partition_dirichlet(df, n_merchants=n_merchants, alpha=alpha, seed=seed, by=by)
    assert len(shards) == n_merchants
    assert all(len(s) > 0 for s in shards.values()), "every merchant gets at least one query"
    combined = pd.concat(shards.values(), ignore_index=True)
    assert _row_keys(combined) == _row_keys(df)
    owners = combined.groupby("query_id")["merchant_id"].nunique()
    assert (owners == 1).all()
    for merchant_id, shard in shards.items():
        assert set(shard["merchant_id"]) == {merchant_id}
        assert shard["merchant_tier"].nunique() == 1
        assert validate_frame(shard, source=merchant_id) == []
    tiers = {m: s["merchant_tier"].iloc[0] for m, s in shards.items()}
    largest = max(shards, key=lambda m: (len(shards[m]), -int(m[1:])))
    assert tiers[largest] == "large"


@settings(max_examples=30, deadline=None)
@given(df=frames, seed=st.integers(0, 2**16), by=st.sampled_from(["query", "category"]))
def test_same_seed_same_split(df: pd.DataFrame, seed: int, by: str) -> None:
    a = partition_dirichlet(df, n_merchants=3, alpha=0.5, seed=seed, by=by)
    b = partition_dirichlet(df, n_merchants=3, alpha=0.5, seed=seed, by=by)
    assert a.keys() == b.keys()
    for merchant_id in a:
        pd.testing.assert_frame_equal(a[merchant_id], b[merchant_id])


def _largest_share(alpha: float, seed: int) -> float:
    df = make_impressions([2] * 200)
    shards = partition_dirichlet(df, n_merchants=5, alpha=alpha, seed=seed)
    return max(len(s) for s in shards.values()) / len(df)


def test_smaller_alpha_means_more_size_skew() -> None:
    seeds = range(30)
    skewed = np.mean([_largest_share(0.1, s) for s in seeds])
    even = np.mean([_largest_share(100.0, s) for s in seeds])
    assert skewed > 0.5
    assert even < 0.3
    assert skewed > even + 0.25


def _mean_category_entropy(alpha: float, seed: int) -> float:
    df = make_impressions([2] * 300, seed=seed)
    shards = partition_dirichlet(df, n_merchants=4, alpha=alpha, seed=seed, by="category")
    entropies = []
    for shard in shards.values():
        first = shard.groupby("query_id")["category"].first()
        p = first.value_counts(normalize=True).to_numpy()
        entropies.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(entropies))


def test_smaller_alpha_means_more_category_specialisation() -> None:
    seeds = range(15)
    specialised = np.mean([_mean_category_entropy(0.1, s) for s in seeds])
    mixed = np.mean([_mean_category_entropy(100.0, s) for s in seeds])
    assert specialised < mixed - 0.5


def test_partition_by_merchant_keeps_the_data_merchants() -> None:
    df = make_impressions([3] * 6)
    df["merchant_id"] = ["shop-b"] * 12 + ["shop-a"] * 6
    shards = partition_by_merchant(df)
    assert sorted(shards) == ["shop-a", "shop-b"]
    assert len(shards["shop-b"]) == 12
    assert shards["shop-b"]["merchant_tier"].iloc[0] == "large"
    assert shards["shop-a"]["merchant_tier"].iloc[0] == "small"


def test_partition_by_merchant_needs_the_column() -> None:
    df = make_impressions([2, 2]).drop(columns=["merchant_id"])
    with pytest.raises(DataError, match="merchant_id"):
        partition_by_merchant(df)


def test_bad_parameters_are_refused() -> None:
    df = make_impressions([2, 2, 2])
    with pytest.raises(DataError, match="only 3 queries"):
        partition_dirichlet(df, n_merchants=5, alpha=1.0, seed=0)
    with pytest.raises(ConfigError, match="alpha"):
        partition_dirichlet(df, n_merchants=2, alpha=0.0, seed=0)
    with pytest.raises(DataError, match="category"):
        partition_dirichlet(
            df.drop(columns=["category"]), n_merchants=2, alpha=1, seed=0, by="category"
        )


def _with_shoppers(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["user_id_hash"] = [f"{i % 7:032x}" for i in range(len(out))]
    return out


@settings(max_examples=30, deadline=None)
@given(df=frames, seed=st.integers(0, 2**16))
def test_user_id_hash_travels_with_its_rows(df: pd.DataFrame, seed: int) -> None:
    df = _with_shoppers(df)
    expected = dict(
        zip(zip(df["query_id"], df["product_id"], strict=True), df["user_id_hash"], strict=True)
    )
    for shards in (
        partition_dirichlet(df, n_merchants=2, alpha=1.0, seed=seed),
        partition_by_merchant(
            df.assign(merchant_id=["a" if i % 2 else "b" for i in range(len(df))])
        ),
    ):
        combined = pd.concat(shards.values(), ignore_index=True)
        found = zip(
            zip(combined["query_id"], combined["product_id"], strict=True),
            combined["user_id_hash"],
            strict=True,
        )
        assert dict(found) == expected
        for merchant_id, shard in shards.items():
            assert validate_frame(shard, source=merchant_id) == []


@pytest.mark.parametrize("bad", ["/../../x", "..", ".hidden", "a/b", "a b", "x" * 65, "é"])
def test_partition_by_merchant_refuses_ids_unsafe_as_file_names(bad: str) -> None:
    df = make_impressions([2, 2, 2])
    df["merchant_id"] = ["ok"] * 4 + [bad] * 2
    with pytest.raises(DataError, match=r"^data:5: merchant_id: .* is not allowed as a name"):
        partition_by_merchant(df)
