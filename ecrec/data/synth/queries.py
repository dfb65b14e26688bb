"""Queries: what a shopper names of its target and the paraphrased words it types."""

from __future__ import annotations

import numpy as np

from ecrec.data.synth.categories import CATEGORIES
from ecrec.data.synth.draws import _choice
from ecrec.data.synth.rules import ProductFacts, QueryIntent
from ecrec.data.synth.vocabulary import (
    COLOUR_SHADES,
    COLOURS,
    EXCLUSIONS,
    FILLER_PREFIXES,
    FILLER_SUFFIXES,
    PRICE_WORDS,
)

_TYPO_RATE = 0.15
_FILLER_RATE = 0.25
#: How often a query uses a category synonym rather than the canonical name.
_QUERY_SYNONYM_RATE = 0.55
#: How often a query's colour is written as a shade, or as a synonym.
_QUERY_SHADE_RATE = 0.15
_QUERY_COLOUR_SYNONYM_RATE = 0.3
#: What an item query names, each independently.
_NAME_PROB = {
    "colour": 0.55,
    "brand": 0.2,
    "material": 0.25,
    "price_band": 0.15,
    "size": 0.4,
    "feature": 0.6,
    "excluded_material": 0.25,
}

#: What an accessory query names besides the accessory and its host.
_ACCESSORY_NAME_PROB = {"colour": 0.4, "brand": 0.25, "material": 0.2}


def _typo(rng: np.random.Generator, text: str) -> str:
    words = text.split(" ")
    long_words = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long_words:
        return text
    i = long_words[int(rng.integers(len(long_words)))]
    word = words[i]
    j = int(rng.integers(1, len(word) - 1))
    if rng.random() < 0.5:
        word = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    else:
        word = word[:j] + word[j + 1 :]
    words[i] = word
    return " ".join(words)


def _make_intent(rng: np.random.Generator, target: ProductFacts) -> QueryIntent:
    """What a shopper looking for ``target`` names (the rest is left open)."""
    if target.accessory is not None:
        named = {k: rng.random() < p for k, p in _ACCESSORY_NAME_PROB.items()}
        return QueryIntent(
            category=target.category,
            accessory=target.accessory,
            colour=target.colour if named["colour"] else None,
            brand=target.brand if named["brand"] else None,
            material=target.material if named["material"] else None,
        )
    cat = CATEGORIES[target.category]
    named = {k: rng.random() < p for k, p in _NAME_PROB.items()}
    variant = next(v for v in cat.variants if v.label == target.feature)
    excluded = None
    others = [m for m in cat.materials if m != target.material]
    if named["excluded_material"] and others:
        excluded = _choice(rng, others)
    return QueryIntent(
        category=target.category,
        colour=target.colour if named["colour"] else None,
        brand=target.brand if named["brand"] else None,
        material=target.material if named["material"] and excluded is None else None,
        excluded_material=excluded,
        size=target.size if named["size"] else None,
        feature=target.feature if named["feature"] and variant.asks else None,
        price_band=(
            target.price_band if named["price_band"] and target.price_band in PRICE_WORDS else None
        ),
    )


def _query_text(rng: np.random.Generator, intent: QueryIntent, *, typo: bool) -> str:
    """One surface form of ``intent``: synonyms, shades, mixed word order, filler words.

    With ``typo``, one word of four letters or more is misspelt.
    """
    cat = CATEGORIES[intent.category]
    noun = cat.synonyms[0]
    if rng.random() < _QUERY_SYNONYM_RATE:
        noun = _choice(rng, cat.synonyms[1:])
    if intent.accessory is not None:
        accessory = next(a for a in cat.accessories if a.label == intent.accessory)
        noun = _choice(rng, accessory.asks).format(host=noun)
    modifiers: list[str] = []
    if intent.price_band is not None:
        modifiers.append(_choice(rng, PRICE_WORDS[intent.price_band]))
    if intent.brand is not None:
        modifiers.append(intent.brand.lower())
    colour = None
    if intent.colour is not None:
        words = COLOURS[intent.colour]
        if rng.random() < _QUERY_SHADE_RATE:
            colour = _choice(rng, COLOUR_SHADES[intent.colour])
        elif len(words) > 1 and rng.random() < _QUERY_COLOUR_SYNONYM_RATE:
            colour = _choice(rng, words[1:])
        else:
            colour = words[0]
    if intent.material is not None:
        modifiers.append(intent.material)
    if intent.feature is not None:
        variant = next(v for v in cat.variants if v.label == intent.feature)
        modifiers.append(_choice(rng, variant.asks))
    trailing: list[str] = []
    if intent.size is not None:
        size = next(s for s in cat.sizes if s.label == intent.size)
        trailing.append(_choice(rng, size.asks))
    if intent.excluded_material is not None:
        trailing.append(_choice(rng, EXCLUSIONS).format(material=intent.excluded_material))

    style = rng.random()
    if style < 0.45:  # "cheap acme grey velvet sofa 3 seater"
        chunks = [*modifiers, *([colour] if colour else []), noun, *trailing]
    elif style < 0.65:  # "sofa acme velvet grey 3 seater"
        rest = [*modifiers, *([colour] if colour else [])]
        chunks = [noun, *(rest[int(i)] for i in rng.permutation(len(rest))), *trailing]
    elif style < 0.8 and colour:  # "acme velvet sofa in grey"
        chunks = [*modifiers, noun, "in", colour, *trailing]
    else:  # any order
        everything = [*modifiers, *([colour] if colour else []), noun, *trailing]
        chunks = [everything[int(i)] for i in rng.permutation(len(everything))]
    if rng.random() < _FILLER_RATE:
        if rng.random() < 0.5:
            chunks.insert(0, _choice(rng, FILLER_PREFIXES))
        else:
            chunks.append(_choice(rng, FILLER_SUFFIXES))
    text = " ".join(chunks).lower()
    return _typo(rng, text) if typo else text
