"""The synthetic marketplace: valid, deterministic, non-IID, hard for naive rankers, learnable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrec.data.desensitize import (
    CARD_TOKEN,
    EMAIL_TOKEN,
    PHONE_TOKEN,
    USER_ID_HASH_PATTERN,
    hash_key_id,
    hash_user_id,
)
from ecrec.data.io import load_data_dir, validate_frame
from ecrec.data.schema import COLUMN_ORDER, MANIFEST_FILE, VALIDATION_FILE
from ecrec.data.synth import (
    BRANDS,
    CATEGORIES,
    COLOUR_SHADES,
    COLOURS,
    EXCLUSIONS,
    PRICE_WORDS,
    USER_SEGMENTS,
    Marketplace,
    ProductFacts,
    QueryIntent,
    SynthConfig,
    config_help,
    parse_product,
    parse_query,
    relevance,
    shopper_hash_key,
    synthesize,
    write_marketplace,
)
from ecrec.data.synth.queries import _query_text
from ecrec.errors import ConfigError, DataError
from ecrec.metrics.ranking import ranking_metrics

EMAIL_PATTERN = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
PHONE_PATTERN = re.compile(r"\+\d[\d ().-]{7,}|\(\d{3}\) ?\d{3}-\d{4}")
TEXT_COLUMNS = ["query", "product_title", "product_text", "description"]
#: The default ``ecrec simulate`` marketplace (ecrec.config.DataConfig's defaults).
SIMULATE_DEFAULT = SynthConfig(
    merchants=3, queries_per_merchant=40, candidates_per_query=10, validation_queries=40, seed=0
)


@pytest.fixture(scope="module")
def market() -> Marketplace:
    return synthesize(SynthConfig())


@pytest.fixture(scope="module")
def big_validation() -> tuple[Marketplace, pd.DataFrame]:
    """400 validation queries, so difficulty figures are not one small sample's luck."""
    market = synthesize(SynthConfig(merchants=3, queries_per_merchant=10, validation_queries=400))
    return market, market.validation.reset_index(drop=True)


def _all_rows(market: Marketplace) -> pd.DataFrame:
    return pd.concat([*market.merchants.values(), market.validation], ignore_index=True)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _overlap(frame: pd.DataFrame) -> np.ndarray:
    """Distinct query words found in the product's title or text."""
    return np.array(
        [
            len(_words(q) & _words(f"{t} {x}"))
            for q, t, x in zip(
                frame["query"], frame["product_title"], frame["product_text"], strict=True
            )
        ],
        dtype=float,
    )


def _reader_scores(frame: pd.DataFrame) -> np.ndarray:
    """The rule applied to what the text says: the ceiling a ranker could learn."""
    scores = []
    for q, t, x in zip(frame["query"], frame["product_title"], frame["product_text"], strict=True):
        intent = parse_query(q)
        scores.append(relevance(intent, parse_product(t, x)) if intent else 0)
    return np.array(scores, dtype=float)


def _ndcg(frame: pd.DataFrame, scores: np.ndarray) -> float:
    return ranking_metrics(
        query_ids=frame["query_id"].to_numpy(),
        labels=frame["label"].to_numpy(),
        scores=np.asarray(scores, dtype=float),
        relevance=frame["relevance"].to_numpy(),
        k=10,
    )["ndcg@10"]


def _host(category: str) -> str:
    return category.removesuffix(" accessories")


# --------------------------------------------------------------------------- #
# Contract, determinism, non-IID
# --------------------------------------------------------------------------- #


def test_every_frame_meets_the_data_contract(market: Marketplace) -> None:
    assert sorted(market.merchants) == ["m00", "m01", "m02", "m03"]
    for merchant_id, df in market.merchants.items():
        assert validate_frame(df, source=merchant_id) == []
        assert list(df.columns) == list(COLUMN_ORDER)
        assert set(df["merchant_id"]) == {merchant_id}, "training rows show own products only"
    assert validate_frame(market.validation, source="validation") == []
    assert market.validation["query_id"].nunique() == SynthConfig().validation_queries
    assert set(_all_rows(market)["relevance"]) == {0, 1, 2, 3}


def test_each_query_shows_its_candidates_once_in_positions_1_to_k(market: Marketplace) -> None:
    k = SynthConfig().candidates_per_query
    for df in [*market.merchants.values(), market.validation]:
        for _, group in df.groupby("query_id"):
            assert len(group) == k
            assert sorted(group["position"]) == list(range(1, k + 1))
            assert group["product_id"].is_unique
            assert group["user_id_hash"].nunique() == 1
            assert group["user_segment"].nunique() == 1


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    config = SynthConfig(merchants=3, queries_per_merchant=15, validation_queries=10, seed=7)
    first = write_marketplace(synthesize(config), tmp_path / "a")
    second = write_marketplace(synthesize(config), tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert synthesize(config).intents == synthesize(config).intents

    other = synthesize(SynthConfig(merchants=3, queries_per_merchant=15, validation_queries=10))
    same = synthesize(config)
    assert not other.merchants["m00"].equals(same.merchants["m00"])
    assert not set(other.merchants["m00"]["user_id_hash"]) & set(
        same.merchants["m00"]["user_id_hash"]
    ), "the hash key is derived from the seed"


def test_merchants_are_non_iid(market: Marketplace) -> None:
    sizes = [len(df) for _, df in sorted(market.merchants.items())]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] >= 3 * sizes[-1], "power-law size skew"
    tiers = {m: df["merchant_tier"].iloc[0] for m, df in market.merchants.items()}
    assert tiers == {"m00": "large", "m01": "small", "m02": "small", "m03": "small"}

    mixes = [
        df["category"].map(_host).value_counts(normalize=True) for df in market.merchants.values()
    ]
    top_share = [float(mix.iloc[:3].sum()) for mix in mixes]
    assert min(top_share) > 0.5, "each merchant specialises in a few categories"
    tops = {tuple(mix.index[:2]) for mix in mixes}
    assert len(tops) > 1, "merchants specialise in different categories"

    segment_mixes = pd.DataFrame(
        {m: df["user_segment"].value_counts(normalize=True) for m, df in market.merchants.items()}
    ).fillna(0.0)
    spread = segment_mixes.max(axis=1) - segment_mixes.min(axis=1)
    assert spread.max() > 0.2, "shopper mixes differ between merchants"


def test_validation_lists_mix_merchants_and_both_tiers(market: Marketplace) -> None:
    val = market.validation
    assert set(val["merchant_id"]) == set(market.merchants)
    merchant_queries = set().union(*(set(df["query_id"]) for df in market.merchants.values()))
    assert not merchant_queries & set(val["query_id"])
    per_query = val.groupby("query_id").agg(
        merchants=("merchant_id", "nunique"), tiers=("merchant_tier", "nunique")
    )
    assert (per_query["merchants"] >= 2).all()
    assert (per_query["tiers"] == 2).all(), "provider exposure per tier is defined per query"
    tier_of = {m: df["merchant_tier"].iloc[0] for m, df in market.merchants.items()}
    assert (val["merchant_tier"] == val["merchant_id"].map(tier_of)).all()


# --------------------------------------------------------------------------- #
# Shoppers
# --------------------------------------------------------------------------- #


def test_shoppers_have_one_segment_one_home_and_a_heavy_tail(market: Marketplace) -> None:
    rows = _all_rows(market)
    assert rows["user_id_hash"].map(lambda h: bool(USER_ID_HASH_PATTERN.fullmatch(h))).all()
    assert (rows.groupby("user_id_hash")["user_segment"].nunique() == 1).all()
    assert set(rows["user_segment"]) <= set(USER_SEGMENTS)

    homes: dict[str, set[str]] = {}
    for name, df in [*market.merchants.items(), ("validation", market.validation)]:
        for user in set(df["user_id_hash"]):
            homes.setdefault(user, set()).add(name)
    assert all(len(h) == 1 for h in homes.values()), "a shopper belongs to one merchant"

    for merchant_id, df in market.merchants.items():
        queries_per_shopper = df.groupby("user_id_hash")["query_id"].nunique()
        assert queries_per_shopper.max() > 3, f"{merchant_id} has a heavy shopper"
        assert (queries_per_shopper <= 3).mean() >= 0.6, "most shoppers issue 1-3 queries"
        assert queries_per_shopper.sum() == df["query_id"].nunique()
    impressions = rows.groupby("user_id_hash").size()
    assert impressions.max() >= 8 * impressions.median(), "heavy shoppers have many impressions"


def test_shopper_ids_are_hashed_under_a_key_derived_from_the_seed(tmp_path: Path) -> None:
    config = SynthConfig(merchants=2, queries_per_merchant=10, validation_queries=4, seed=3)
    market = synthesize(config)
    key = shopper_hash_key(config)
    assert key == shopper_hash_key(SynthConfig(seed=3))
    assert key != shopper_hash_key(SynthConfig(seed=4))
    assert key != shopper_hash_key(SynthConfig(seed=3, user_id_salt="other"))
    assert hash_user_id("m00-u00000", key=key) in set(market.merchants["m00"]["user_id_hash"])
    write_marketplace(market, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["user_id_hash_key_id"] == hash_key_id(key)
    assert key.hex() not in (tmp_path / MANIFEST_FILE).read_text()


# --------------------------------------------------------------------------- #
# The relevance rule, and that the text determines it
# --------------------------------------------------------------------------- #


def test_relevance_of_every_row_is_the_rule_applied_to_facts_read_from_its_text(
    market: Marketplace,
) -> None:
    rows = _all_rows(market)
    assert set(rows["query_id"]) == set(market.intents)
    for row in rows.itertuples():
        facts = parse_product(row.product_title, row.product_text)
        assert relevance(market.intents[row.query_id], facts) == row.relevance, row
        assert facts.category == _host(row.category) and facts.brand == row.brand


def test_most_queries_state_their_intent_exactly(market: Marketplace) -> None:
    """Only typos hide what a query means (they hit about 15% of queries)."""
    queries = _all_rows(market).groupby("query_id")["query"].first()
    exact = [parse_query(q) == market.intents[qid] for qid, q in queries.items()]
    assert 0.8 <= np.mean(exact) < 1.0


def test_clicks_follow_relevance_and_position(market: Marketplace) -> None:
    rows = _all_rows(market)
    click_rate = rows.groupby("relevance")["label"].mean()
    assert click_rate.is_monotonic_increasing
    assert click_rate[3] > 5 * click_rate[0]
    top, low = rows[rows["position"] <= 3], rows[rows["position"] >= 8]
    assert top[top["relevance"] == 3]["label"].mean() > low[low["relevance"] == 3]["label"].mean()


_CATEGORY = st.sampled_from(sorted(CATEGORIES))


@st.composite
def intents(draw: st.DrawFn) -> QueryIntent:
    """Any intent the synthesizer can ask for."""
    name = draw(_CATEGORY)
    cat = CATEGORIES[name]

    def optional(values: object) -> object:
        options = sorted(values)  # type: ignore[call-overload]
        return draw(st.none() | st.sampled_from(options)) if options else None

    colour, brand = optional(COLOURS), optional(BRANDS)
    if draw(st.booleans()):
        accessory = draw(st.sampled_from(cat.accessories))
        return QueryIntent(
            category=name,
            accessory=accessory.label,
            colour=colour,
            brand=brand,
            material=optional(accessory.materials),
        )
    excluded = optional(cat.materials)
    asked = [v.label for v in cat.variants if v.asks]
    return QueryIntent(
        category=name,
        colour=colour,
        brand=brand,
        material=None if excluded else optional(cat.materials),
        excluded_material=excluded,
        size=optional(s.label for s in cat.sizes),
        feature=optional(asked),
        price_band=optional(PRICE_WORDS),
    )


@settings(max_examples=300, deadline=None)
@given(intent=intents(), seed=st.integers(0, 2**32 - 1))
def test_every_paraphrase_without_a_typo_reads_back_as_its_intent(
    intent: QueryIntent, seed: int
) -> None:
    text = _query_text(np.random.default_rng(seed), intent, typo=False)
    assert parse_query(text) == intent, text


def _matching_product(intent: QueryIntent) -> ProductFacts:
    cat = CATEGORIES[intent.category]
    materials = (
        next(a for a in cat.accessories if a.label == intent.accessory).materials
        if intent.accessory
        else cat.materials
    )
    material = intent.material or next(
        (m for m in materials if m != intent.excluded_material), materials[0]
    )
    return ProductFacts(
        category=intent.category,
        accessory=intent.accessory,
        colour=intent.colour or "black",
        brand=intent.brand or BRANDS[0],
        material=material,
        size=None
        if intent.accessory
        else intent.size or (cat.sizes[0].label if cat.sizes else None),
        feature=None if intent.accessory else intent.feature or cat.variants[0].label,
        price_band=intent.price_band or "mid",
    )


@settings(max_examples=200, deadline=None)
@given(intent=intents(), data=st.data())
def test_relevance_grades_the_documented_way(intent: QueryIntent, data: st.DataObject) -> None:
    product = _matching_product(intent)
    if product.material == intent.excluded_material:  # the only material is excluded
        assert relevance(intent, product) == 0
        return
    assert relevance(intent, product) == 3
    other_colour = data.draw(st.sampled_from([c for c in COLOURS if c != product.colour]))
    recoloured = ProductFacts(**{**product.__dict__, "colour": other_colour})
    assert relevance(intent, recoloured) == (2 if intent.colour else 3)
    other_brand = data.draw(st.sampled_from([b for b in BRANDS if b != product.brand]))
    rebranded = ProductFacts(**{**recoloured.__dict__, "brand": other_brand})
    expected = 3 - (intent.colour is not None) - (intent.brand is not None)
    assert relevance(intent, rebranded) == expected
    other_category = data.draw(st.sampled_from([c for c in CATEGORIES if c != intent.category]))
    assert relevance(intent, ProductFacts(**{**product.__dict__, "category": other_category})) == 0
    flipped = ProductFacts(
        **{**product.__dict__, "accessory": None if intent.accessory else "Anything"}
    )
    assert relevance(intent, flipped) == 0, "an accessory is never the item, nor vice versa"
    if intent.feature is not None:
        opposite = next(
            v.label for v in CATEGORIES[intent.category].variants if v.label != intent.feature
        )
        assert relevance(intent, ProductFacts(**{**product.__dict__, "feature": opposite})) == 0
    if intent.excluded_material is not None:
        excluded = ProductFacts(**{**product.__dict__, "material": intent.excluded_material})
        assert relevance(intent, excluded) == 0


# --------------------------------------------------------------------------- #
# Hard negatives and paraphrases: word overlap is neither sufficient nor necessary
# --------------------------------------------------------------------------- #


def test_hard_negatives_share_the_query_words(market: Marketplace) -> None:
    rows = _all_rows(market).assign(overlap=lambda f: _overlap(f))
    zeros = rows[rows["relevance"] == 0]
    high_overlap_zeros = zeros[zeros["overlap"] >= 2]
    assert len(high_overlap_zeros) / len(zeros) > 0.25, "many wrong products look right"

    beaten = 0
    for _, group in rows.groupby("query_id"):
        best_exact = group.loc[group["relevance"] == 3, "overlap"].max()
        beaten += bool((group.loc[group["relevance"] == 0, "overlap"] >= best_exact).any())
    assert beaten / rows["query_id"].nunique() > 0.4, "a wrong product matches as many words"

    kinds = {"accessory": 0, "same_category_zero": 0, "same_brand_other_category": 0}
    for query_id, group in rows.groupby("query_id"):
        intent = market.intents[query_id]
        zero = group[group["relevance"] == 0]
        host = zero["category"].map(_host)
        kinds["accessory"] += bool(
            (zero["category"] == f"{intent.category} accessories").any()
            if intent.accessory is None
            else (zero["category"] == intent.category).any()
        )
        kinds["same_category_zero"] += bool((zero["category"] == group["category"].iloc[0]).any())
        same_brand = (zero["brand"] == intent.brand) & (host != intent.category)
        kinds["same_brand_other_category"] += bool(intent.brand and same_brand.any())
    n = rows["query_id"].nunique()
    assert kinds["accessory"] / n > 0.7
    assert kinds["same_category_zero"] / n > 0.3
    branded = sum(1 for q in rows["query_id"].unique() if market.intents[q].brand)
    assert kinds["same_brand_other_category"] / branded > 0.5


def test_variants_of_the_wanted_product_are_shown(market: Marketplace) -> None:
    """Another colour or size of the same product (same brand, material and category)."""
    rows = _all_rows(market)
    found = 0
    for _, group in rows.groupby("query_id"):
        exact = group[group["relevance"] == 3]
        partial = group[group["relevance"].between(1, 2)]
        keys = set(zip(exact["brand"], exact["material"], exact["category"], strict=True))
        found += any(
            key in keys
            for key in zip(partial["brand"], partial["material"], partial["category"], strict=True)
        )
    assert found / rows["query_id"].nunique() > 0.2


def test_paraphrases_need_no_shared_words(market: Marketplace) -> None:
    rows = _all_rows(market).assign(overlap=lambda f: _overlap(f))
    exact = rows[rows["relevance"] == 3]
    assert (exact["overlap"] <= 1).mean() > 0.15, "exact matches often share at most one word"
    assert (exact["overlap"] == 0).any()

    queries = set(rows["query"])
    words = {w for q in queries for w in q.split()}
    assert words & {"trainers", "couch", "settee", "gray", "cheap", "rucksack", "tee", "bbq"}
    assert words & {w for shades in COLOUR_SHADES.values() for s in shades for w in s.split()}
    negations = {t.split(" ")[0] for t in EXCLUSIONS}
    assert sum(any(w in negations for w in q.split()) for q in queries) > 10
    nouns_first = sum(
        any(q.startswith(s) for s in cat.synonyms) for cat in CATEGORIES.values() for q in queries
    )
    assert nouns_first / len(queries) > 0.15, "word order varies"
    assert all(q == q.lower() for q in queries)
    typos = [q for q in queries if parse_query(q) is None]
    assert typos, "some queries carry a typo in their category word"


# --------------------------------------------------------------------------- #
# Difficulty and learnability on the pooled validation shard
# --------------------------------------------------------------------------- #


def test_keyword_overlap_is_well_below_the_oracle_but_the_text_decides(
    big_validation: tuple[Marketplace, pd.DataFrame],
) -> None:
    """Measured (seed 0, 400 queries): random ~0.62, overlap ~0.71, text reader ~0.96."""
    _, val = big_validation
    rng = np.random.default_rng(0)
    oracle = _ndcg(val, val["relevance"].to_numpy())
    random = np.mean([_ndcg(val, rng.random(len(val))) for _ in range(5)])
    overlap = _ndcg(val, _overlap(val))
    reader = _ndcg(val, _reader_scores(val))
    assert oracle == pytest.approx(1.0)
    assert overlap <= 0.8, "word overlap is not enough"
    assert overlap > random + 0.03, "but the words carry some signal"
    assert reader >= 0.93, "relevance is readable from query and product text"
    assert reader - overlap >= 0.15


def test_the_simulate_default_marketplace_is_hard_for_keywords() -> None:
    val = synthesize(SIMULATE_DEFAULT).validation
    assert _ndcg(val, _overlap(val)) <= 0.8
    assert _ndcg(val, _reader_scores(val)) >= 0.9


def test_what_decides_relevance_survives_a_64_token_ranker() -> None:
    from transformers import AutoTokenizer

    from ecrec.model.ranker import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    rows = _all_rows(synthesize(SIMULATE_DEFAULT))
    decisive = [
        f"{t} | {x.split(' | description:')[0]}"
        for t, x in zip(rows["product_title"], rows["product_text"], strict=True)
    ]
    lengths = [len(ids) for ids in tokenizer(rows["query"].tolist(), decisive)["input_ids"]]
    assert max(lengths) <= 64


# --------------------------------------------------------------------------- #
# Output hygiene, manifest, refusals
# --------------------------------------------------------------------------- #


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


def test_manifest_states_the_rules_and_round_trips(tmp_path: Path, market: Marketplace) -> None:
    written = write_marketplace(market, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert "category" in manifest["relevance_rule"] and "colour" in manifest["relevance_rule"]
    assert "accessory" in manifest["relevance_rule"]
    assert "shopper" in manifest["shopper_model"]
    assert manifest["config"]["seed"] == 0
    assert manifest["rows"]["validation"] == len(market.validation)
    assert manifest["rows"]["merchants"] == {m: len(df) for m, df in market.merchants.items()}
    assert (tmp_path / VALIDATION_FILE) in written
    assert "excluded_material" not in (tmp_path / MANIFEST_FILE).read_text(), "intents stay hidden"

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
    ("merchants", "candidates"), [(1, 10), (2, 2), (5, 30)], ids=["one-merchant", "k2", "k30"]
)
def test_unusual_sizes_still_make_valid_marketplaces(merchants: int, candidates: int) -> None:
    config = SynthConfig(
        merchants=merchants,
        queries_per_merchant=6,
        candidates_per_query=candidates,
        validation_queries=5,
    )
    market = synthesize(config)
    for name, df in [*market.merchants.items(), ("validation", market.validation)]:
        assert validate_frame(df, source=name) == []
        assert (df.groupby("query_id").size() == candidates).all()


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


def test_text_the_synthesizer_did_not_write_is_refused_by_field() -> None:
    with pytest.raises(DataError, match="category"):
        parse_product("Some Title", "brand: Acme | colour: black | category: spaceship")
    with pytest.raises(DataError, match="colour"):
        parse_product("Some Title", "brand: Acme | colour: plaid | category: sofa")
    assert parse_query("something nobody sells") is None


def test_every_config_field_has_help() -> None:
    assert all(config_help().values())
