"""Keyword-match features: bounded, exact on known pairs, and free of corpus statistics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrec.model.features import (
    LEXICAL_FEATURES,
    char_grams,
    cosine,
    lexical_features,
    pair_features,
    title_of,
)


def named(query: str, document: str) -> dict[str, float]:
    return dict(zip(LEXICAL_FEATURES, pair_features(query, document), strict=True))


texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)


@settings(max_examples=200, deadline=None)
@given(query=texts, document=texts)
def test_every_feature_lies_in_the_unit_interval(query: str, document: str) -> None:
    values = pair_features(query, document)
    assert len(values) == len(LEXICAL_FEATURES)
    assert all(0.0 <= v <= 1.0 + 1e-9 for v in values), named(query, document)


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet="abcdefgh xyz0123", min_size=1, max_size=40))
def test_a_text_matches_itself_fully(text: str) -> None:
    grams = char_grams(text)
    if grams:
        assert cosine(grams, grams) == pytest.approx(1.0)


def test_the_features_of_a_clear_match_and_a_clear_miss() -> None:
    match = named("1/2 in. copper pipe", "1/2 in. Copper Pipe | plumbing")
    miss = named("1/2 in. copper pipe", "Garden Hose Reel")
    assert match["words-title"] == 1.0 and miss["words-title"] == 0.0
    assert match["numbers-title"] == 1.0 and miss["numbers-title"] == 0.0
    assert match["has-numbers"] == miss["has-numbers"] == 1.0
    assert match["char-title"] > 0.9 > 0.2 > miss["char-title"]


def test_title_features_read_only_the_title() -> None:
    """Words that appear only in the product text count for ``words-doc``, not the title."""
    values = named("oak", "Dining Table | colour oak")
    assert values["words-title"] == 0.0 and values["words-doc"] == 1.0
    assert title_of("Dining Table | colour oak") == "Dining Table"


def test_stems_match_plurals_and_inflections() -> None:
    values = named("hammers", "Claw Hammer 16 oz")
    assert values["words-title"] == 0.0 and values["stems-title"] == 1.0


def test_the_feature_matrix_is_row_wise_and_checks_lengths() -> None:
    matrix = lexical_features(["drill", "paint"], ["Cordless Drill", "White Paint"])
    assert matrix.shape == (2, len(LEXICAL_FEATURES)) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix[1], pair_features("paint", "White Paint"), rtol=1e-6)
    with pytest.raises(ValueError, match="2 queries but 1 product texts"):
        lexical_features(["a", "b"], ["c"])
