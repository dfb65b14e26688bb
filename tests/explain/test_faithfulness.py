"""Faithfulness rules: which words a query names, and when an explanation credits them."""

from __future__ import annotations

import numpy as np
import pytest

from ecrec.explain import TokenExplanation, faithfulness_check, named_attributes
from ecrec.explain.faithfulness import FaithfulnessTally


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("dark blue running shoes", {"colour": "navy", "category": "running shoes"}),
        ("gray couch", {"colour": "grey", "category": "sofa"}),
        ("cheap acme tshirt", {"category": "t-shirt"}),
        ("blue t-shirt", {"colour": "blue", "category": "t-shirt"}),
        ("olive drinks bottle", {"colour": "green", "category": "water bottle"}),
        ("red senakers", {"colour": "red"}),  # a typo'd category is not recognised
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
    assert FaithfulnessTally().to_dict()["rate"] is None
