"""Faithfulness of token explanations to the synthetic marketplace's relevance rule.

The synthetic marketplace's hidden relevance is driven by category words first
and colour words second (see :mod:`ecrec.data.synth`), so a faithful
explanation of a well-trained ranker credits the query's category or colour
word in the product text. :func:`faithfulness_check` judges one explanation;
:class:`FaithfulnessTally` adds them up over a run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecrec.data.synth import CATEGORIES, COLOURS
from ecrec.explain.tokens import TokenExplanation

#: How many of a pair's most positive tokens the check looks at.
FAITHFULNESS_TOP = 3
ATTRIBUTES = ("category", "colour")


def _surface_forms() -> list[tuple[str, str, str]]:
    """``(attribute, canonical value, word)`` for every category and colour word."""
    forms = [("category", name, word) for name, cat in CATEGORIES.items() for word in cat.synonyms]
    forms += [("colour", name, word) for name, words in COLOURS.items() for word in words]
    # Longest first, so "dark blue" is read as navy before "blue" is considered.
    return sorted(forms, key=lambda f: -len(f[2]))


_FORMS = _surface_forms()


def _word_pattern(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", re.IGNORECASE)


def named_attributes(query: str) -> dict[str, str]:
    """The category and colour a query names, as canonical values (synthetic vocabulary).

    Longest phrases win and consume their words, so "dark blue" names navy,
    not blue. A typo'd word is not recognised (the query then does not count).
    """
    text = query.lower()
    taken = np.zeros(len(text), dtype=bool)
    named: dict[str, str] = {}
    for attribute, canonical, word in _FORMS:
        if attribute in named:
            continue
        for match in _word_pattern(word).finditer(text):
            if not taken[match.start() : match.end()].any():
                taken[match.start() : match.end()] = True
                named[attribute] = canonical
                break
    return named


def _attribute_spans(document: str, attribute: str, canonical: str) -> list[tuple[int, int]]:
    """Where the document mentions the named value, by any of its words."""
    words = CATEGORIES[canonical].synonyms if attribute == "category" else COLOURS[canonical]
    spans = []
    for word in words:
        spans += [(m.start(), m.end()) for m in _word_pattern(word).finditer(document)]
    return spans


def faithfulness_check(explanation: TokenExplanation) -> dict[str, Any] | None:
    """Is a query-named category/colour word among the top positive document tokens?

    Applies to pairs whose query names a category or colour that the document
    mentions (a word absent from the document cannot be attributed; ranking a
    product without it is a ranking error, not an explanation error). A token
    belongs to a word when its character span overlaps the word's, so any of a
    word's word-pieces counts. Returns None when the check does not apply.
    """
    named = named_attributes(explanation.query)
    spans = explanation.spans()
    top = explanation.top_positive(FAITHFULNESS_TOP)
    per_attribute: dict[str, bool] = {}
    for attribute, canonical in named.items():
        word_spans = _attribute_spans(explanation.document, attribute, canonical)
        if not word_spans:
            continue
        per_attribute[attribute] = any(
            spans[i][0] < end and start < spans[i][1] for i in top for start, end in word_spans
        )
    if not per_attribute:
        return None
    return {
        "named": named,
        "hit": any(per_attribute.values()),
        "by_attribute": per_attribute,
        "top_tokens": [explanation.tokens[i].strip() for i in top],
    }


def _rate(hits: int, pairs: int) -> dict[str, Any]:
    return {"pairs": pairs, "hits": hits, "rate": (hits / pairs) if pairs else None}


@dataclass
class FaithfulnessTally:
    """Faithfulness checks added up over the explained pairs of a run."""

    pairs: int = 0
    hits: int = 0
    by_attribute: dict[str, list[int]] = field(
        default_factory=lambda: {a: [0, 0] for a in ATTRIBUTES}  # [pairs, hits]
    )

    def add(self, check: dict[str, Any] | None) -> None:
        if check is None:
            return
        self.pairs += 1
        self.hits += int(check["hit"])
        for attribute, hit in check["by_attribute"].items():
            self.by_attribute[attribute][0] += 1
            self.by_attribute[attribute][1] += int(hit)

    def to_dict(self) -> dict[str, Any]:
        return {
            **_rate(self.hits, self.pairs),
            "top": FAITHFULNESS_TOP,
            "by_attribute": {a: _rate(h, n) for a, (n, h) in self.by_attribute.items()},
            "rule": (
                "pairs whose query names a category or colour word (synthetic vocabulary, "
                "synonyms included) that the document mentions; a hit when any word-piece "
                f"of that value is among the top {FAITHFULNESS_TOP} positively attributed "
                "document tokens"
            ),
        }
