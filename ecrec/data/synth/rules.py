"""The hidden side of the marketplace: intents, product facts, the relevance rule and the
click model (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass

#: Plain-language statement of the hidden relevance rule (also in the manifest).
RELEVANCE_RULE = (
    "relevance is 0 if the product's category differs from the query's category, if it is "
    "an accessory when the query wants the item (or the item or another accessory when the "
    "query wants an accessory), if it has the opposite of a must-have variant the query "
    "demands (e.g. wired for 'wireless'), or is made of a material the query excludes; "
    "otherwise it starts at 3, loses 1 if the query names a colour the product's colour "
    "family does not match, and loses 1 if the query names a size, brand, material or price "
    "band the product does not match (exact matches are 3, the right product in the wrong "
    "colour is 2)."
)

#: Plain-language statement of the click model (also in the manifest).
CLICK_MODEL = (
    "candidates are shown in the order of a noisy production ranker "
    "(relevance + Normal(0, 1)); P(click) = examination(position) * attractiveness(relevance) "
    "with examination(p) = 1 / p**0.7 and attractiveness = [0.05, 0.2, 0.5, 0.85]."
)

EXAMINATION_EXPONENT = 0.7
ATTRACTIVENESS: tuple[float, ...] = (0.05, 0.2, 0.5, 0.85)
PRODUCTION_NOISE = 1.0


@dataclass(frozen=True)
class QueryIntent:
    """What a shopper really wants: the hidden side of a query (``None`` = not named)."""

    category: str
    accessory: str | None = None  # an Accessory label: the shopper wants the accessory
    colour: str | None = None  # a colour family (a key of COLOURS)
    brand: str | None = None
    material: str | None = None
    excluded_material: str | None = None
    size: str | None = None  # a Size label
    feature: str | None = None  # a Variant label the product must have
    price_band: str | None = None


@dataclass(frozen=True)
class ProductFacts:
    """The attributes of a product that relevance depends on (all readable from its title)."""

    category: str  # the item's category, or the host category of an accessory
    accessory: str | None  # Accessory label, None for the item itself
    colour: str  # colour family
    brand: str
    material: str
    size: str | None
    feature: str | None  # Variant label; None for accessories
    price_band: str


def relevance(intent: QueryIntent, product: ProductFacts) -> int:
    """The hidden relevance rule (see :mod:`ecrec.data.synth`): a grade in 0..3."""
    if product.category != intent.category or product.accessory != intent.accessory:
        return 0
    if intent.feature is not None and product.feature != intent.feature:
        return 0
    if intent.excluded_material is not None and product.material == intent.excluded_material:
        return 0
    grade = 3
    if intent.colour is not None and product.colour != intent.colour:
        grade -= 1
    others = (
        (intent.size, product.size),
        (intent.brand, product.brand),
        (intent.material, product.material),
        (intent.price_band, product.price_band),
    )
    if any(wanted is not None and wanted != actual for wanted, actual in others):
        grade -= 1
    return grade
