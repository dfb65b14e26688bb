"""Faithfulness rules: which words a query names, and when an explanation credits them."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ecrec.explain import TokenExplanation, faithfulness_check, named_attributes
from ecrec.explain.faithfulness import FaithfulnessTally, chance_of_hit


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("dark blue running shoes", {"colour": "navy", "category": "running shoes"}),
        ("gray couch", {"colour": "grey", "category": "sofa"}),
        ("cheap acme tshirt", {"category": "t-shirt"}),
        ("blue t-shirt", {"colour": "blue", "category": "t-shirt"}),
        ("olive drinks bottle", {"colour": "green", "category": "water bottle"}),
        ("red senakers", {"colour": "red"}),  # a typo'd category is not recognised
        # Shades name their colour family, as in the synthesizer's queries and titles.
        ("aluminium slate lawnmower", {"colour": "grey", "category": "lawn mower"}),
        ("midnight blue sofa", {"colour": "navy", "category": "sofa"}),
        ("corded drill in oatmeal no plastic", {"colour": "beige", "category": "drill"}),
        ("premium leather", {}),
    ],
)
def test_named_attributes(query: str, named: dict[str, str]) -> None:
    assert named_attributes(query) == named


def _token_expl(query: str, tokens: list[str], values: list[float]) -> TokenExplanation:
    return TokenExplanation(
        query=query,
        document="".join(tokens),
        tokens=tokens,
        values=np.asarray(values, dtype=float),
        base_value=0.0,
        score=float(sum(values)),
        evals=0,
    )


TOKENS = ["", "Vela ", "Navy ", "Sn", "eakers ", "| ", "colour", ": ", "navy", ""]


def test_faithfulness_counts_any_word_piece_in_the_top_three() -> None:
    # "Sn" is a word-piece of "Sneakers", the document's word for "trainers".
    hit = _token_expl("trainers", TOKENS, [0, 0.3, 0.01, 0.2, 0.0, 0.25, 0, 0, 0, 0])
    check = faithfulness_check(hit)
    assert check is not None and check["hit"] and check["by_attribute"] == {"category": True}
    assert check["top_tokens"] == ["Vela", "|", "Sn"]
    # The category word exists but only ranks 4th; negative values never count.
    miss = _token_expl("navy kicks", TOKENS, [0, 0.3, -0.5, 0.01, 0.02, 0.25, 0.2, 0, -1, 0])
    check = faithfulness_check(miss)
    assert check is not None and not check["hit"]
    assert check["by_attribute"] == {"category": False, "colour": False}


def test_a_shade_in_the_document_is_the_colour_the_query_names() -> None:
    tokens = ["", "Em", "erald ", "Mesh ", "Kicks ", "| ", "colour", ": ", "emerald", ""]
    hit = _token_expl("olive kicks", tokens, [0, 0.4, 0.3, 0, 0, 0.2, 0, 0, 0, 0])
    check = faithfulness_check(hit)
    assert check is not None and check["by_attribute"] == {"colour": True, "category": False}


def test_chance_is_the_hit_rate_of_shuffled_attributions() -> None:
    # "Sn" + "eakers" cover the category word: 2 of the 8 non-empty tokens, 3 picked.
    check = faithfulness_check(
        _token_expl("trainers", TOKENS, [0, 0.3, 0.01, 0.2, 0.0, 0.25, 0, 0, 0, 0])
    )
    assert check is not None
    assert check["chance"] == pytest.approx(1 - math.comb(6, 3) / math.comb(8, 3))
    # Every way to place the values on the 8 non-empty tokens, checked directly.
    values = [0.3, 0.01, 0.2, 0.0, 0.25, 0, 0, 0]
    slots = [i for i, t in enumerate(TOKENS) if t.strip()]
    hits = total = 0
    for perm in set(itertools.permutations(values)):
        placed = [0.0] * len(TOKENS)
        for slot, value in zip(slots, perm, strict=True):
            placed[slot] = value
        shuffled = faithfulness_check(_token_expl("trainers", TOKENS, placed))
        assert shuffled is not None
        hits += shuffled["hit"]
        total += 1
    assert hits / total == pytest.approx(check["chance"])
    assert chance_of_hit(8, 0, 3) == 0.0 and chance_of_hit(8, 6, 3) == 1.0
    assert chance_of_hit(8, 2, 0) == 0.0


def test_faithfulness_skips_pairs_that_cannot_be_judged() -> None:
    tokens = ["", "Acme ", "Mug", ""]
    assert faithfulness_check(_token_expl("premium leather", tokens, [0, 1, 1, 0])) is None
    # The query names a colour the product does not mention: not applicable.
    assert faithfulness_check(_token_expl("pink kettle", tokens, [0, 1, 1, 0])) is None


def test_the_tally_adds_up_applicable_pairs_only() -> None:
    tally = FaithfulnessTally()
    tally.add(
        faithfulness_check(_token_expl("trainers", TOKENS, [0, 0.3, 0, 0.2, 0, 0.25] + [0] * 4))
    )
    tally.add(
        faithfulness_check(
            _token_expl("navy kicks", TOKENS, [0, 0.3, -0.5, 0, 0, 0.25, 0.2, 0, -1, 0])
        )
    )
    tally.add(None)
    out = tally.to_dict()
    assert (out["pairs"], out["hits"], out["rate"]) == (2, 1, 0.5)
    assert out["by_attribute"]["category"] == {"pairs": 2, "hits": 1, "rate": 0.5}
    assert out["by_attribute"]["colour"] == {"pairs": 1, "hits": 0, "rate": 0.0}
    # 3 tokens picked of 8: "trainers" has 2 covering tokens, "navy kicks" 4 (both colours).
    chances = [1 - math.comb(8 - r, 3) / math.comb(8, 3) for r in (2, 4)]
    assert out["chance_rate"] == pytest.approx(sum(chances) / 2)
    # P(at least 1 hit of 2)
    assert out["p_value"] == pytest.approx(1 - (1 - chances[0]) * (1 - chances[1]))
    empty = FaithfulnessTally().to_dict()
    assert empty["rate"] is None and empty["chance_rate"] is None and empty["p_value"] is None


def test_p_value_is_the_chance_of_at_least_that_many_hits() -> None:
    tally = FaithfulnessTally()
    for hit in (True, True, False):
        tally.pairs += 1
        tally.hits += hit
        tally.chances.append(0.5)
    # Three fair coins: P(at least 2 heads) = 4/8.
    assert tally.to_dict()["p_value"] == pytest.approx(0.5)
    tally.hits = 3
    assert tally.to_dict()["p_value"] == pytest.approx(0.125)
