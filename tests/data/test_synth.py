"""The synthetic marketplace: valid, deterministic, non-IID, and learnable from its text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecrec.data.desensitize import CARD_TOKEN, EMAIL_TOKEN, PHONE_TOKEN
from ecrec.data.io import load_data_dir, validate_frame
from ecrec.data.schema import COLUMN_ORDER, MANIFEST_FILE, VALIDATION_FILE
from ecrec.data.synth import (
    BRANDS,
    CATEGORIES,
    COLOURS,
    PRICE_WORDS,
    Marketplace,
    SynthConfig,
    config_help,
    synthesize,
    write_marketplace,
)
from ecrec.errors import ConfigError, DataError

EMAIL_PATTERN = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
PHONE_PATTERN = re.compile(r"\+\d[\d ().-]{7,}|\(\d{3}\) ?\d{3}-\d{4}")
TEXT_COLUMNS = ["query", "product_title", "product_text", "description"]


@pytest.fixture(scope="module")
def market() -> Marketplace:
    return synthesize(SynthConfig())


def _all_rows(market: Marketplace) -> pd.DataFrame:
    return pd.concat([*market.merchants.values(), market.validation], ignore_index=True)


def _dcg(rels: np.ndarray, k: int = 10) -> float:
    rels = rels[:k]
    return float(((2.0**rels - 1) / np.log2(np.arange(2, len(rels) + 2))).sum())


def _mean_ndcg(df: pd.DataFrame, score: pd.Series) -> float:
    values = []
    for _, group in df.assign(_score=score).groupby("query_id"):
        ideal = _dcg(np.sort(group["relevance"].to_numpy())[::-1])
        if ideal == 0:
            continue
        ranked = group.sort_values("_score", ascending=False, kind="stable")
        values.append(_dcg(ranked["relevance"].to_numpy()) / ideal)
    return float(np.mean(values))


def test_every_frame_meets_the_data_contract(market: Marketplace) -> None:
    assert sorted(market.merchants) == ["m00", "m01", "m02", "m03"]
    for merchant_id, df in market.merchants.items():
        assert validate_frame(df, source=merchant_id) == []
        assert list(df.columns) == list(COLUMN_ORDER)
        assert set(df["merchant_id"]) == {merchant_id}
    assert validate_frame(market.validation, source="validation") == []
    assert market.validation["query_id"].nunique() == SynthConfig().validation_queries


def test_each_query_shows_its_candidates_once_in_positions_1_to_k(market: Marketplace) -> None:
    k = SynthConfig().candidates_per_query
    for df in [*market.merchants.values(), market.validation]:
        for _, group in df.groupby("query_id"):
            assert len(group) == k
            assert sorted(group["position"]) == list(range(1, k + 1))
            assert group["product_id"].is_unique
            assert group["user_id_hash"].nunique() == 1


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    config = SynthConfig(merchants=3, queries_per_merchant=15, validation_queries=10, seed=7)
    first = write_marketplace(synthesize(config), tmp_path / "a")
    second = write_marketplace(synthesize(config), tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name

    other = synthesize(SynthConfig(merchants=3, queries_per_merchant=15, validation_queries=10))
    same = synthesize(config)
    assert not other.merchants["m00"].equals(same.merchants["m00"])


def test_merchants_are_non_iid(market: Marketplace) -> None:
    sizes = [len(df) for _, df in sorted(market.merchants.items())]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] >= 3 * sizes[-1], "power-law size skew"
    tiers = {m: df["merchant_tier"].iloc[0] for m, df in market.merchants.items()}
    assert tiers == {"m00": "large", "m01": "small", "m02": "small", "m03": "small"}

    mixes = [df["category"].value_counts(normalize=True) for df in market.merchants.values()]
    top_share = [float(mix.iloc[:3].sum()) for mix in mixes]
    assert min(top_share) > 0.5, "each merchant specialises in a few categories"
    tops = {tuple(mix.index[:2]) for mix in mixes}
    assert len(tops) > 1, "merchants specialise in different categories"

    segment_mixes = pd.DataFrame(
        {m: df["user_segment"].value_counts(normalize=True) for m, df in market.merchants.items()}
    ).fillna(0.0)
    spread = segment_mixes.max(axis=1) - segment_mixes.min(axis=1)
    assert spread.max() > 0.2, "shopper mixes differ between merchants"


def test_validation_is_pooled_across_merchants(market: Marketplace) -> None:
    assert set(market.validation["merchant_id"]) == set(market.merchants)
    merchant_queries = set().union(*(set(df["query_id"]) for df in market.merchants.values()))
    assert not merchant_queries & set(market.validation["query_id"])


def test_ranking_by_true_relevance_beats_random_by_far(market: Marketplace) -> None:
    val = market.validation
    rng = np.random.default_rng(0)
    ideal = _mean_ndcg(val, val["relevance"])
    random = _mean_ndcg(val, pd.Series(rng.random(len(val)), index=val.index))
    assert ideal == pytest.approx(1.0)
    assert ideal - random > 0.25


def test_relevance_is_recoverable_from_the_text(market: Marketplace) -> None:
    """A crude word-overlap ranker beats random, so a text model has something to learn."""
    val = market.validation

    def overlap(row: pd.Series) -> int:
        query = set(re.findall(r"[a-z]+", row["query"]))
        product = set(re.findall(r"[a-z]+", row["product_text"].lower()))
        return len(query & product)

    rng = np.random.default_rng(1)
    random = _mean_ndcg(val, pd.Series(rng.random(len(val)), index=val.index))
    lexical = _mean_ndcg(val, val.apply(overlap, axis=1))
    assert lexical > random + 0.1


def test_relevance_follows_category_then_colour(market: Marketplace) -> None:
    rows = _all_rows(market)
    for _, group in rows.groupby("query_id"):
        relevant = group[group["relevance"] > 0]
        assert relevant["category"].nunique() == 1, "relevance needs the query's category"
        assert not group[group["relevance"] == 0]["category"].isin(relevant["category"]).any()

    colour_words = {word for words in COLOURS.values() for word in words}
    names_colour = rows["query"].map(lambda q: any(w in q.split() for w in colour_words))
    checked = 0
    for _, group in rows[names_colour].groupby("query_id"):
        exact = group[group["relevance"] == 3]
        other_colour = group[(group["relevance"] > 0) & ~group["colour"].isin(exact["colour"])]
        if len(exact) and len(other_colour):
            assert other_colour["relevance"].max() <= 2, "the wrong colour costs relevance"
            checked += 1
    assert checked > 20
    # Clicks follow relevance: a shopper clicks exact matches far more often.
    click_rate = rows.groupby("relevance")["label"].mean()
    assert click_rate.is_monotonic_increasing
    assert click_rate[3] > 5 * click_rate[0]


def test_queries_use_synonyms_typos_and_lower_case(market: Marketplace) -> None:
    queries = set(_all_rows(market)["query"])
    assert all(q == q.lower() for q in queries)
    words = {w for q in queries for w in q.split()}
    assert words & {"trainers", "couch", "settee", "gray", "cheap", "rucksack", "tee"}
    vocabulary = {b.lower() for b in BRANDS}
    for synonyms in COLOURS.values():
        vocabulary |= {w for s in synonyms for w in s.split()}
    for category in CATEGORIES.values():
        vocabulary |= {w for s in (*category.synonyms, *category.materials) for w in s.split()}
    vocabulary |= {w for ws in PRICE_WORDS.values() for w in ws}
    assert words - vocabulary, "some queries carry typos"


def test_written_text_contains_no_emails_or_phone_numbers(market: Marketplace) -> None:
    rows = _all_rows(market)
    for column in TEXT_COLUMNS:
        text = rows[column].dropna()
        assert not text.str.contains(EMAIL_PATTERN).any(), column
        assert not text.str.contains(PHONE_PATTERN).any(), column
    masked = rows["description"].str.contains(
        "|".join(re.escape(t) for t in (EMAIL_TOKEN, PHONE_TOKEN, CARD_TOKEN))
    )
    assert masked.any(), "the synthesizer injects contact details so masking is exercised"
    assert rows["user_id_hash"].str.fullmatch(r"[0-9a-f]{32}").all()


def test_product_text_is_short_enough_for_a_64_token_ranker(market: Marketplace) -> None:
    rows = _all_rows(market)
    pieces = rows["product_text"].map(lambda t: len(re.findall(r"\w+|[^\w\s]", t)))
    assert pieces.max() < 60
    title = rows.iloc[0]
    assert title["brand"] in title["product_title"]
    assert title["category"] in title["product_text"]


def test_manifest_states_the_rule_and_round_trips(tmp_path: Path, market: Marketplace) -> None:
    written = write_marketplace(market, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert "category" in manifest["relevance_rule"] and "colour" in manifest["relevance_rule"]
    assert manifest["config"]["seed"] == 0
    assert manifest["rows"]["validation"] == len(market.validation)
    assert manifest["rows"]["merchants"] == {m: len(df) for m, df in market.merchants.items()}
    assert (tmp_path / VALIDATION_FILE) in written

    merchants, validation = load_data_dir(tmp_path)
    assert sorted(merchants) == sorted(market.merchants)
    pd.testing.assert_frame_equal(merchants["m01"], market.merchants["m01"])
    pd.testing.assert_frame_equal(validation, market.validation)


def test_an_existing_marketplace_is_not_overwritten_without_force(tmp_path: Path) -> None:
    small = SynthConfig(merchants=3, queries_per_merchant=5, validation_queries=2)
    write_marketplace(synthesize(small), tmp_path)
    with pytest.raises(DataError, match="already holds a marketplace"):
        write_marketplace(synthesize(small), tmp_path)
    fewer = SynthConfig(merchants=2, queries_per_merchant=5, validation_queries=2)
    write_marketplace(synthesize(fewer), tmp_path, overwrite=True)
    merchants, _ = load_data_dir(tmp_path)
    assert sorted(merchants) == ["m00", "m01"], "stale merchant files are removed"


@pytest.mark.parametrize(
    "bad",
    [
        {"merchants": 0},
        {"queries_per_merchant": 0},
        {"candidates_per_query": 1},
        {"validation_queries": -1},
        {"user_id_salt": ""},
    ],
)
def test_unusable_configs_are_refused_by_name(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        synthesize(SynthConfig(**bad))  # type: ignore[arg-type]


def test_every_config_field_has_help() -> None:
    assert all(config_help().values())
