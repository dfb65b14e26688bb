"""Lexical match features of a (query, product text) pair for the hybrid ranker.

Keyword match is what every e-commerce search ranker starts from; on real catalogues
(Home Depot, ESCI) character n-gram overlap of query and title is a baseline a neural
ranker must beat. These features need no corpus statistics (no IDF): every node of a
federation computes exactly the same feature for the same pair from its own data, so
one shared head means the same thing on every node. Hand-written (scikit-learn's
vectorisers fit corpus-wide vocabularies and IDF, which is what must be avoided here).

All features lie in [0, 1]; a pair is scored from its own text only (no per-query
normalisation), so product scores can be served independently.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

#: The separator :func:`ecrec.data.schema.ranker_documents` puts between title and text.
TITLE_SEPARATOR = " | "
_WORD = re.compile(r"[a-z0-9]+(?:[./][0-9]+)?")
_NUMBER = re.compile(r"[0-9]+(?:[./][0-9]+)?")

#: Names of the lexical features, in column order.
LEXICAL_FEATURES: tuple[str, ...] = (
    "char-title",  # cosine of character 3-gram counts, query vs title
    "char-doc",  # the same against title + product text
    "words-title",  # share of query words found in the title
    "stems-title",  # share of query words whose 4-letter stem starts a title word
    "words-doc",  # share of query words found anywhere in the product text
    "numbers-title",  # share of query numbers (sizes, models) found in the title
    "has-numbers",  # the query holds a number at all (makes numbers-title meaningful)
)


def title_of(document: str) -> str:
    """The title part of a ranker document (``"<title> | <text>"``)."""
    return document.split(TITLE_SEPARATOR, 1)[0]


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def char_grams(text: str, n: int = 3) -> Counter[str]:
    """Character n-grams of each word padded with spaces (so word starts count)."""
    grams: Counter[str] = Counter()
    for word in words(text):
        padded = f" {word} "
        grams.update(padded[i : i + n] for i in range(max(1, len(padded) - n + 1)))
    return grams


def cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    dot = sum(count * large.get(gram, 0) for gram, count in small.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return float(dot / norm) if norm else 0.0


def _share(needles: Sequence[str], found: set[str]) -> float:
    return sum(1 for n in needles if n in found) / len(needles) if needles else 0.0


def _stem_share(needles: Sequence[str], haystack: Sequence[str]) -> float:
    if not needles:
        return 0.0
    stems = {w[:4] for w in haystack}
    return sum(1 for n in needles if n[:4] in stems) / len(needles)


def pair_features(query: str, document: str) -> list[float]:
    """The :data:`LEXICAL_FEATURES` of one pair."""
    title = title_of(document)
    q_words, t_words, d_words = words(query), words(title), words(document)
    q_grams = char_grams(query)
    numbers = _NUMBER.findall(query.lower())
    title_numbers = set(_NUMBER.findall(title.lower()))
    return [
        cosine(q_grams, char_grams(title)),
        cosine(q_grams, char_grams(document)),
        _share(q_words, set(t_words)),
        _stem_share(q_words, t_words),
        _share(q_words, set(d_words)),
        _share(numbers, title_numbers),
        1.0 if numbers else 0.0,
    ]


def lexical_features(queries: Sequence[str], documents: Sequence[str]) -> NDArray[np.float32]:
    """``[n, len(LEXICAL_FEATURES)]`` features of ``n`` pairs."""
    if len(queries) != len(documents):
        raise ValueError(f"{len(queries)} queries but {len(documents)} product texts")
    out = np.zeros((len(queries), len(LEXICAL_FEATURES)), dtype=np.float32)
    for i, (query, document) in enumerate(zip(queries, documents, strict=True)):
        out[i] = pair_features(query, document)
    return out


__all__ = [
    "LEXICAL_FEATURES",
    "TITLE_SEPARATOR",
    "char_grams",
    "cosine",
    "lexical_features",
    "pair_features",
    "title_of",
    "words",
]
