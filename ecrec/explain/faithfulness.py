"""Faithfulness of token explanations to the synthetic marketplace's relevance rule.

In the synthetic marketplace's hidden relevance rule (see :mod:`ecrec.data.synth`)
the category is the gate (a product of another category is irrelevant) and the
colour family costs a grade; accessories, must-have variants, excluded materials,
sizes, brands and price bands decide too, but are not judged here. A faithful
explanation of a well-trained ranker therefore credits the product text's words
for the query's category or colour. Words are the synthesizer's whole vocabulary:
category synonyms, colour words *and* the shade names catalogues and shoppers use
("slate" is grey, "midnight blue" navy).

:func:`faithfulness_check` judges one explanation and gives the hit's chance
level: the probability that as many tokens drawn at random from the document
(the attributions shuffled among its tokens) would hit. :class:`FaithfulnessTally`
adds them up over a run, with the expected rate of shuffled attributions and the
p-value of the hits under that null, so a rate can be read against chance.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecrec.data.synth import CATEGORIES, COLOUR_SHADES, COLOURS
from ecrec.explain.tokens import TokenExplanation

#: How many of a pair's most positive tokens the check looks at.
FAITHFULNESS_TOP = 3
ATTRIBUTES = ("category", "colour")


def _colour_words(family: str) -> tuple[str, ...]:
    """Every word for a colour family: its names, then its shades."""
    return (*COLOURS[family], *COLOUR_SHADES.get(family, ()))


def _surface_forms() -> list[tuple[str, str, str]]:
    """``(attribute, canonical value, word)`` for every category and colour word."""
    forms = [("category", name, word) for name, cat in CATEGORIES.items() for word in cat.synonyms]
    forms += [("colour", name, word) for name in COLOURS for word in _colour_words(name)]
    # Longest first, so "dark blue" is read as navy before "blue" is considered.
    return sorted(forms, key=lambda f: -len(f[2]))


_FORMS = _surface_forms()


def _word_pattern(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", re.IGNORECASE)


def named_attributes(query: str) -> dict[str, str]:
    """The category and colour a query names, as canonical values (synthetic vocabulary).

    Longest phrases win and consume their words, so "dark blue" and "midnight
    blue" name navy, not blue. Shades name their family ("slate" is grey). A
    typo'd word is not recognised (the query then does not count).
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
    words = CATEGORIES[canonical].synonyms if attribute == "category" else _colour_words(canonical)
    spans = []
    for word in words:
        spans += [(m.start(), m.end()) for m in _word_pattern(word).finditer(document)]
    return spans


def chance_of_hit(candidates: int, relevant: int, picked: int) -> float:
    """P(at least one of ``picked`` tokens drawn without replacement from ``candidates``
    is one of the ``relevant`` ones): the hit rate of shuffled attributions."""
    if picked <= 0 or relevant <= 0:
        return 0.0
    if candidates - relevant < picked:
        return 1.0
    return 1.0 - math.comb(candidates - relevant, picked) / math.comb(candidates, picked)


def faithfulness_check(explanation: TokenExplanation) -> dict[str, Any] | None:
    """Is a query-named category/colour word among the top positive document tokens?

    Applies to pairs whose query names a category or colour that the document
    mentions (a word absent from the document cannot be attributed; ranking a
    product without it is a ranking error, not an explanation error). A token
    belongs to a word when its character span overlaps the word's, so any of a
    word's word-pieces counts. Returns None when the check does not apply.

    ``chance`` is the probability of a hit if the same attribution values were
    shuffled among the document's non-empty tokens: as many tokens as were
    picked, drawn at random, hit when one covers a judged word.
    """
    named = named_attributes(explanation.query)
    spans = explanation.spans()
    top = explanation.top_positive(FAITHFULNESS_TOP)
    per_attribute: dict[str, bool] = {}
    covering: set[int] = set()
    for attribute, canonical in named.items():
        word_spans = _attribute_spans(explanation.document, attribute, canonical)
        if not word_spans:
            continue
        covers = {
            i
            for i, (a, b) in enumerate(spans)
            if explanation.tokens[i].strip()
            and any(a < end and start < b for start, end in word_spans)
        }
        covering |= covers
        per_attribute[attribute] = any(i in covers for i in top)
    if not per_attribute:
        return None
    candidates = sum(1 for t in explanation.tokens if t.strip())
    return {
        "named": named,
        "hit": any(per_attribute.values()),
        "by_attribute": per_attribute,
        "top_tokens": [explanation.tokens[i].strip() for i in top],
        "chance": chance_of_hit(candidates, len(covering), len(top)),
    }


def _at_least(chances: list[float], hits: int) -> float:
    """P(at least ``hits`` successes) of independent trials with these chances."""
    dist = np.zeros(len(chances) + 1)
    dist[0] = 1.0
    for p in chances:
        dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
        dist[0] *= 1 - p
    return float(min(1.0, dist[hits:].sum()))


def _rate(hits: int, pairs: int) -> dict[str, Any]:
    return {"pairs": pairs, "hits": hits, "rate": (hits / pairs) if pairs else None}


@dataclass
class FaithfulnessTally:
    """Faithfulness checks added up over the explained pairs of a run."""

    pairs: int = 0
    hits: int = 0
    chances: list[float] = field(default_factory=list)
    by_attribute: dict[str, list[int]] = field(
        default_factory=lambda: {a: [0, 0] for a in ATTRIBUTES}  # [pairs, hits]
    )

    def add(self, check: dict[str, Any] | None) -> None:
        if check is None:
            return
        self.pairs += 1
        self.hits += int(check["hit"])
        self.chances.append(float(check["chance"]))
        for attribute, hit in check["by_attribute"].items():
            self.by_attribute[attribute][0] += 1
            self.by_attribute[attribute][1] += int(hit)

    def to_dict(self) -> dict[str, Any]:
        return {
            **_rate(self.hits, self.pairs),
            "chance_rate": float(np.mean(self.chances)) if self.chances else None,
            "p_value": _at_least(self.chances, self.hits) if self.chances else None,
            "top": FAITHFULNESS_TOP,
            "by_attribute": {a: _rate(h, n) for a, (n, h) in self.by_attribute.items()},
            "rule": (
                "pairs whose query names a category or colour word (synthetic vocabulary, "
                "synonyms and shades included) that the document mentions; a hit when any "
                f"word-piece of that value is among the top {FAITHFULNESS_TOP} positively "
                "attributed document tokens; chance_rate is the expected rate with the "
                "attributions shuffled among each document's tokens, p_value the chance of "
                "at least this many hits under that shuffle"
            ),
        }
