"""Reading facts and intents back from text: what a ranker has to learn to do."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from ecrec.data.synth.categories import CATEGORIES
from ecrec.data.synth.rules import ProductFacts, QueryIntent
from ecrec.data.synth.vocabulary import BRANDS, COLOUR_SHADES, COLOURS, EXCLUSIONS, PRICE_WORDS
from ecrec.errors import DataError

_Phrase = tuple[tuple[str, ...], str, Any]  # (words, slot, value)


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[a-z0-9]+", text.lower()))


def _colour_family(word: str) -> str | None:
    for family in COLOURS:
        if word in COLOURS[family] or word in COLOUR_SHADES[family]:
            return family
    return None


def _longest_first(phrases: Iterable[_Phrase]) -> list[_Phrase]:
    return sorted(phrases, key=lambda p: -len(p[0]))


def _take_phrases(words: Sequence[str], phrases: Sequence[_Phrase]) -> dict[str, Any]:
    """Slots filled by phrases found in ``words``; longest phrases first, each word used once.

    Hand-written: a few dozen fixed phrases per category, no tokenizer or matcher
    library needed.
    """
    free: list[str | None] = list(words)
    found: dict[str, Any] = {}
    for phrase, slot, value in phrases:
        if slot in found:
            continue
        n = len(phrase)
        for i in range(len(free) - n + 1):
            if tuple(free[i : i + n]) == phrase:
                free[i : i + n] = [None] * n
                found[slot] = value
                break
    return found


def _category_phrases() -> list[_Phrase]:
    phrases: list[_Phrase] = []
    for name, category in CATEGORIES.items():
        for synonym in category.synonyms:
            phrases.append((_words(synonym), "category", (name, None)))
            for accessory in category.accessories:
                for template in accessory.asks:
                    words = _words(template.format(host=synonym))
                    phrases.append((words, "category", (name, accessory.label)))
    return _longest_first(phrases)


def _attribute_phrases(category: str, accessory: str | None) -> list[_Phrase]:
    cat = CATEGORIES[category]
    phrases: list[_Phrase] = []
    for family in COLOURS:
        for word in (*COLOURS[family], *COLOUR_SHADES[family]):
            phrases.append((_words(word), "colour", family))
    phrases += [((brand.lower(),), "brand", brand) for brand in BRANDS]
    for band, words in PRICE_WORDS.items():
        phrases += [(_words(w), "price_band", band) for w in words]
    if accessory is not None:
        materials = next(a for a in cat.accessories if a.label == accessory).materials
    else:
        materials = cat.materials
        for variant in cat.variants:
            phrases += [(_words(ask), "feature", variant.label) for ask in variant.asks]
        for size in cat.sizes:
            phrases += [(_words(ask), "size", size.label) for ask in size.asks]
        for material in materials:
            for template in EXCLUSIONS:
                words = _words(template.format(material=material))
                phrases.append((words, "excluded_material", material))
    phrases += [(_words(m), "material", m) for m in materials]
    return _longest_first(phrases)


_CATEGORY_PHRASES = _category_phrases()
_ATTRIBUTE_PHRASES: dict[tuple[str, str | None], list[_Phrase]] = {
    (name, accessory): _attribute_phrases(name, accessory)
    for name, category in CATEGORIES.items()
    for accessory in (None, *(a.label for a in category.accessories))
}


def parse_query(query: str) -> QueryIntent | None:
    """The intent a query's words state, or None when no category is recognised.

    This is the reading a ranker has to learn: synonyms, shades, size forms,
    must-have variants and exclusions, in any word order. A word with a typo is
    not recognised, so the reading can miss what the shopper meant.
    """
    words = _words(query)
    found = _take_phrases(words, _CATEGORY_PHRASES)
    if "category" not in found:
        return None
    category, accessory = found["category"]
    attributes = _take_phrases(words, _ATTRIBUTE_PHRASES[(category, accessory)])
    return QueryIntent(category=category, accessory=accessory, **attributes)


def _product_fields(product_text: str) -> dict[str, str]:
    pairs = (part.split(": ", 1) for part in product_text.split(" | "))
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def _label_in(title_words: Sequence[str], labels: Iterable[str]) -> str | None:
    phrases = _longest_first((_words(label), "label", label) for label in labels)
    return _take_phrases(title_words, phrases).get("label")


def parse_product(title: str, product_text: str) -> ProductFacts:
    """Read a product's relevance facts from its title and product text alone.

    Raises :class:`~ecrec.errors.DataError` for text the synthesizer did not write.
    """
    values = _product_fields(product_text)
    category = values.get("category", "")
    host = category.removesuffix(" accessories")
    if host not in CATEGORIES:
        raise DataError(f"product text: category: not a synthetic category: {category!r}")
    cat = CATEGORIES[host]
    words = _words(title)
    colour = _colour_family(values.get("colour", ""))
    if colour is None:
        raise DataError(f"product text: colour: not a synthetic colour: {values.get('colour')!r}")
    accessory = None
    if category != host:
        accessory = _label_in(words, (a.label for a in cat.accessories))
        if accessory is None:
            raise DataError(f"product title: names no {host} accessory: {title!r}")
    return ProductFacts(
        category=host,
        accessory=accessory,
        colour=colour,
        brand=values.get("brand", ""),
        material=values.get("material", ""),
        size=None if accessory else _label_in(words, (s.label for s in cat.sizes)),
        feature=None if accessory else _label_in(words, (v.label for v in cat.variants)),
        price_band=values.get("price_band", ""),
    )
