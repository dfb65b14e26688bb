"""Catalogues: product families with near-duplicates, accessories, shades and titles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ecrec.data.synth.categories import CATEGORIES
from ecrec.data.synth.draws import _choice
from ecrec.data.synth.rules import ProductFacts
from ecrec.data.synth.vocabulary import (
    BRANDS,
    COLOUR_SHADES,
    COLOURS,
    MODEL_NAMES,
    PRICE_BAND_PROBS,
    PRICE_BANDS,
)

#: Raw contact details a seller might paste into a description (masked on output).
_CONTACT_SNIPPETS: tuple[str, ...] = (
    "Questions? Email sales@{brand}-store.com",
    "Call us on +44 20 7946 0{n:03d}",
    "Orders by phone: (555) 013-{n:04d}",
    "Contact {brand}.support@example.org",
)

_CONTACT_RATE = 0.03
#: How often a title uses a category synonym rather than the canonical name.
_TITLE_SYNONYM_RATE = 0.25
#: How often a product's colour is written as a shade.
_PRODUCT_SHADE_RATE = 0.6
_ACCESSORY_FAMILY_SHARE = 0.3
#: How often an accessory's title names the item size / variant it fits.
_FITS_RATE = 0.5
#: Variant labels that read oddly in "made for" phrases ("for Not Waterproof Boots").
_NEGATIVE = ("Not ", "No ", "Without ", "Non-")
_MAX_VARIANTS = 3


@dataclass(frozen=True)
class _Product:
    product_id: str
    merchant_id: str
    family: int
    facts: ProductFacts
    colour_word: str
    title: str
    description: str
    #: For an accessory: the item variant and size it is made for ("Cordless", "3-Seater").
    #: Never decides relevance; it only makes accessories look like what shoppers ask for.
    fits: tuple[str, ...] = ()

    @property
    def category_label(self) -> str:
        if self.facts.accessory is None:
            return self.facts.category
        return f"{self.facts.category} accessories"

    def row_fields(self) -> dict[str, str]:
        return {
            "brand": self.facts.brand,
            "colour": self.colour_word,
            "category": self.category_label,
            "material": self.facts.material,
            "price_band": self.facts.price_band,
            "description": self.description,
        }


def _title_case(text: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def _item_title(style: int, noun: str, facts: ProductFacts, colour: str, model: str) -> str:
    colour_t, material_t, noun_t = _title_case(colour), _title_case(facts.material), noun
    size = f", {facts.size}" if facts.size else ""
    if style == 0:
        return f"{facts.brand} {model} {colour_t} {material_t} {noun_t}, {facts.feature}{size}"
    if style == 1:
        return f"{facts.brand} {noun_t} in {colour_t}, {material_t}, {facts.feature}{size}"
    if style == 2:
        return f"{material_t} {noun_t} by {facts.brand} ({colour_t}), {facts.feature}{size}"
    return f"{facts.brand} {model} {facts.feature} {noun_t}, {colour_t} {material_t}{size}"


def _fits_phrase(fits: Sequence[str]) -> str:
    """How an accessory's title names the item it fits: "3-Seater Reclining", "Laptop Sleeve"."""
    return " ".join(label.removeprefix("With ") for label in fits)


def _accessory_title(style: int, host: str, facts: ProductFacts, colour: str, model: str) -> str:
    colour_t, material_t = _title_case(colour), _title_case(facts.material)
    if style == 0:
        return f"{facts.brand} {colour_t} {material_t} {facts.accessory} for {host}"
    if style == 1:
        return f"{host} {facts.accessory} by {facts.brand}, {colour_t} {material_t}"
    if style == 2:
        return f"{facts.brand} {model} {facts.accessory} for {host} ({colour_t}, {material_t})"
    return f"{facts.accessory} for {host}, {facts.brand}, {colour_t} {material_t}"


def _description(rng: np.random.Generator, facts: ProductFacts, colour: str) -> str:
    cat = CATEGORIES[facts.category]
    if facts.accessory is None:
        text = f"{facts.material.capitalize()} {facts.category} in {colour}"
        text += f" with {_choice(rng, cat.details)}." if cat.details else "."
    else:
        text = f"{facts.accessory} for {facts.category}s in {colour}, made of {facts.material}."
    if rng.random() < _CONTACT_RATE:
        snippet = _choice(rng, _CONTACT_SNIPPETS)
        text += " " + snippet.format(brand=facts.brand.lower(), n=int(rng.integers(1000)))
    return text


def _make_catalogue(
    rng: np.random.Generator,
    merchant_id: str,
    n_products: int,
    category_mix: np.ndarray,
    *,
    first_family: int,
) -> list[_Product]:
    """Product families (one brand, model, material, variant; several colours and sizes)."""
    names = list(CATEGORIES)
    n_brands = int(rng.integers(5, 9))
    brands = [BRANDS[i] for i in sorted(rng.choice(len(BRANDS), size=n_brands, replace=False))]
    families = list(COLOURS)
    products: list[_Product] = []
    family = first_family
    while len(products) < n_products:
        family += 1
        category = names[int(rng.choice(len(names), p=category_mix))]
        cat = CATEGORIES[category]
        accessory = None
        if cat.accessories and rng.random() < _ACCESSORY_FAMILY_SHARE:
            accessory = _choice(rng, cat.accessories)
        material = _choice(rng, accessory.materials if accessory else cat.materials)
        feature = None if accessory else _choice(rng, cat.variants).label
        brand = _choice(rng, brands)
        price_band = PRICE_BANDS[int(rng.choice(3, p=PRICE_BAND_PROBS))]
        model = _choice(rng, MODEL_NAMES)
        style = int(rng.integers(4))
        noun = cat.synonyms[0]
        if rng.random() < _TITLE_SYNONYM_RATE:
            noun = _choice(rng, cat.synonyms[1:])
        noun = _title_case(noun)
        fits: tuple[str, ...] = ()
        if accessory is not None:
            sizes = [z.label for z in cat.sizes if not z.label.startswith("Size ")]
            variants = [v.label for v in cat.variants if not v.label.startswith(_NEGATIVE)]
            if sizes and rng.random() < _FITS_RATE:
                fits += (_choice(rng, sizes),)
            if variants and rng.random() < _FITS_RATE:
                fits += (_choice(rng, variants),)
        host = " ".join(filter(None, (_fits_phrase(fits), noun)))
        n_variants = int(rng.integers(1, _MAX_VARIANTS + 1))
        for colour_index in rng.choice(len(families), size=n_variants, replace=False):
            colour_family = families[int(colour_index)]
            colour = colour_family
            if rng.random() < _PRODUCT_SHADE_RATE:
                colour = _choice(rng, COLOUR_SHADES[colour_family])
            size = None
            if accessory is None and cat.sizes:
                size = _choice(rng, cat.sizes).label
            facts = ProductFacts(
                category=category,
                accessory=accessory.label if accessory else None,
                colour=colour_family,
                brand=brand,
                material=material,
                size=size,
                feature=feature,
                price_band=price_band,
            )
            if accessory is None:
                title = _item_title(style, noun, facts, colour, model)
            else:
                title = _accessory_title(style, host, facts, colour, model)
            products.append(
                _Product(
                    product_id=f"{merchant_id}-p{len(products):05d}",
                    merchant_id=merchant_id,
                    family=family,
                    facts=facts,
                    colour_word=colour,
                    title=title,
                    description=_description(rng, facts, colour),
                    fits=fits,
                )
            )
    return products[:n_products]


@dataclass
class _Pool:
    """Products a query's candidates are drawn from, indexed for hard negatives."""

    products: list[_Product]
    items: dict[str, list[int]] = field(default_factory=dict)
    accessories: dict[str, list[int]] = field(default_factory=dict)
    by_kind: dict[tuple[str, str | None], list[int]] = field(default_factory=dict)
    by_merchant: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.items = {name: [] for name in CATEGORIES}
        self.accessories = {name: [] for name in CATEGORIES}
        for i, product in enumerate(self.products):
            facts = product.facts
            target = self.items if facts.accessory is None else self.accessories
            target[facts.category].append(i)
            self.by_kind.setdefault((facts.category, facts.accessory), []).append(i)
            self.by_merchant.setdefault(product.merchant_id, []).append(i)
