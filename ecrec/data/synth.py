"""A seeded synthetic marketplace, so that ecrec runs with no downloads.

The marketplace has several merchants, each with its own product catalogue,
shoppers and search log, plus a pooled validation shard held by the server. It
is built to look like the real problem in the ways that matter for federated
ranking, and to be *hard for naive rankers* while staying learnable from the
text a ranker reads (``product_title`` + ``product_text``).

* **Non-IID merchants.** Each merchant specialises in a few product categories
  (a Dirichlet draw over categories), carries its own subset of brands, serves
  a different mix of shopper age bands (``user_segment``) and a different share
  of heavy shoppers. Merchant sizes follow a power law (merchant ``m00`` is the
  largest); the largest quarter of merchants (at least one) is
  ``merchant_tier == "large"``. A merchant's training queries only ever show
  its own products.
* **Catalogues with near-duplicates.** Products come in families (one brand,
  model, material and must-have variant, in up to three colours and sizes), and
  about 30% of families are *accessories* for a category ("Replacement Blade for
  Circular Saw", "Cover for 3-Seater Sofa", "Battery for Cordless Drill"), whose
  ``category`` is ``"<host> accessories"`` and whose titles often name the size
  or variant of the item they fit. Product colours are often written as shades
  ("slate" for grey, "midnight blue" for navy, "sand" for beige). Every
  attribute that decides relevance is in the title, so it survives a 64-token
  ranker's truncation.
* **Paraphrased queries.** A query names its target's category by one of its
  synonyms ("couch", "bbq", "kicks"), its colour by a synonym or shade, sizes in
  several forms ("sz 9", "two seater", "750ml"), may demand a must-have variant
  ("wireless", "with hood", "dishwasher safe") or exclude a material ("no
  leather", "without wool"), mixes word orders, adds filler words ("looking
  for", "deals") and sometimes carries a typo. Exact word overlap is therefore
  neither necessary nor sufficient for relevance.
* **Hard negatives.** Each candidate list mixes the target with other exact
  matches, variants of the same product in another colour or size, products of
  the right category with a disqualifying variant or an excluded material,
  accessories for the product, and products of the same brand or colour in
  another category; accessories and same-brand negatives are preferred when
  they share the query's words.
* **Shoppers.** Every impression carries a ``user_id_hash``: a keyed hash (key
  derived from the seed and ``user_id_salt``) of a shopper id. A shopper belongs
  to one merchant, has one ``user_segment``, and issues one or more queries: most
  shoppers 1-3, while a few heavy shoppers (every merchant with at least
  ``_MIN_QUERIES_FOR_HEAVY`` queries has one) issue many. Validation queries
  come from a separate pool of platform shoppers.
* **Mixed-merchant validation.** A validation query's target comes from a
  merchant drawn by size, but its candidates come from the pooled catalogue, and
  every list shows products of both tiers whenever there are two merchants or
  more, so provider exposure per merchant tier is defined on every run.
* A few raw descriptions contain a seller's e-mail address or phone number,
  which desensitisation masks before anything is returned.

Hidden relevance rule
---------------------
:func:`relevance` maps a query's hidden :class:`QueryIntent` and a product's
:class:`ProductFacts` to a grade in 0..3:

* **0** (wrong product) if the product's category differs from the query's, or
  the query asks for an item and the product is an accessory (or the query asks
  for an accessory and the product is the item, or another accessory), or the
  product has the opposite of a must-have variant the query demands, or is made
  of the material the query excludes;
* otherwise start from **3**, subtract 1 if the query names a colour and the
  product's colour family differs, and subtract 1 if the query names any of
  size / brand / material / price band and the product differs in at least one
  of them.

So an exact match is 3, the right product in the wrong colour is 2, in the
wrong colour and size 1. :func:`parse_product` reads :class:`ProductFacts` back
from the title and product text alone and :func:`parse_query` reads an intent
from the query text (a typo'd word is not recognised), which is what makes the
rule learnable from text; tests rely on both.

Click model
-----------
Each query's candidates are shown in the order of a noisy "production" ranker
(score = relevance + Normal(0, 1)), ``position`` 1-based. A shopper examines
position ``p`` with probability ``1 / p ** 0.7`` and clicks an examined product
with probability ``[0.05, 0.2, 0.5, 0.85][relevance]``; ``label`` is the sampled
click. Validation rows get labels the same way and keep ``relevance``.

Everything is drawn from ``numpy.random.default_rng`` streams derived from the
seed, so the same :class:`SynthConfig` always gives identical frames.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecrec.data.desensitize import (
    desensitize_frame,
    hash_key_id,
    hash_user_id,
    synthetic_hash_key,
)
from ecrec.data.io import write_impressions
from ecrec.data.schema import (
    COLUMN_ORDER,
    MANIFEST_FILE,
    MERCHANT_FILE_PATTERN,
    VALIDATION_FILE,
    compose_product_text,
    merchant_ids,
    tiers_by_size,
)
from ecrec.errors import ConfigError, DataError

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

#: Plain-language statement of how shoppers and their ids are made (also in the manifest).
SHOPPER_MODEL = (
    "each shopper belongs to one merchant (validation shoppers to the platform) and has one "
    "user_segment; most issue 1-3 queries, a few heavy shoppers issue many; user_id_hash is "
    "hash_user_id of the shopper id under a key derived from the seed and user_id_salt."
)

EXAMINATION_EXPONENT = 0.7
ATTRACTIVENESS: tuple[float, ...] = (0.05, 0.2, 0.5, 0.85)
PRODUCTION_NOISE = 1.0

#: Age bands used as the sensitive ``user_segment`` attribute.
USER_SEGMENTS: tuple[str, ...] = ("18-24", "25-34", "35-54", "55+")

#: Colour family -> the words shoppers use for it (the first is the canonical name).
COLOURS: dict[str, tuple[str, ...]] = {
    "black": ("black",),
    "white": ("white",),
    "grey": ("grey", "gray"),
    "navy": ("navy", "dark blue"),
    "red": ("red",),
    "green": ("green", "olive"),
    "blue": ("blue",),
    "beige": ("beige", "cream"),
    "brown": ("brown",),
    "pink": ("pink",),
}

#: Colour family -> shade names catalogues use for it (shoppers sometimes do too).
COLOUR_SHADES: dict[str, tuple[str, ...]] = {
    "black": ("jet black", "onyx", "ebony"),
    "white": ("ivory", "snow", "chalk"),
    "grey": ("slate", "graphite", "ash"),
    "navy": ("midnight blue", "ink", "indigo"),
    "red": ("crimson", "burgundy", "scarlet"),
    "green": ("sage", "emerald", "forest green"),
    "blue": ("cobalt", "sky blue", "azure"),
    "beige": ("sand", "taupe", "oatmeal"),
    "brown": ("chocolate", "tan", "walnut"),
    "pink": ("blush", "rose", "fuchsia"),
}

BRANDS: tuple[str, ...] = (
    "Acme",
    "Northwind",
    "Lumen",
    "Vela",
    "Orbis",
    "Kestrel",
    "Tundra",
    "Marlow",
    "Brightway",
    "Solace",
    "Fennick",
    "Haven",
)

#: Model names: shared by a product family's variants, never decide relevance.
MODEL_NAMES: tuple[str, ...] = (
    "Oslo",
    "Aria",
    "Nova",
    "Tempo",
    "Atlas",
    "Echo",
    "Luna",
    "Vista",
    "Metro",
    "Sierra",
    "Cove",
    "Pulse",
)

PRICE_BANDS: tuple[str, ...] = ("budget", "mid", "premium")
PRICE_BAND_PROBS: tuple[float, ...] = (0.4, 0.4, 0.2)
#: Words a shopper uses to ask for a price band (mid is never asked for).
PRICE_WORDS: dict[str, tuple[str, ...]] = {
    "budget": ("cheap", "budget", "affordable"),
    "premium": ("premium", "luxury", "high end"),
}

#: How shoppers exclude a material ("{material}" is replaced).
EXCLUSIONS: tuple[str, ...] = ("no {material}", "not {material}", "without {material}")
#: Words that carry no intent (shoppers add them; they never decide relevance).
FILLER_PREFIXES: tuple[str, ...] = ("buy", "best", "new", "looking for", "top rated")
FILLER_SUFFIXES: tuple[str, ...] = ("sale", "online", "deals", "for home", "free delivery")


@dataclass(frozen=True)
class Variant:
    """One of a category's two mutually exclusive forms of a must-have attribute."""

    label: str  # how a title writes it, e.g. "Wireless"
    asks: tuple[str, ...] = ()  # how shoppers ask for it; empty = nobody asks


@dataclass(frozen=True)
class Size:
    """One size of a category, as a title writes it and as shoppers ask for it."""

    label: str  # e.g. "Size 9", "3-Seater", "750 ml"
    asks: tuple[str, ...]


@dataclass(frozen=True)
class Accessory:
    """A product sold *for* a category's items ("Replacement Blade" for a circular saw)."""

    label: str
    asks: tuple[str, ...]  # query templates; "{host}" is the category word the shopper uses
    materials: tuple[str, ...]


@dataclass(frozen=True)
class Category:
    """A product category: names, materials, its must-have variants, sizes, accessories."""

    synonyms: tuple[str, ...]  # the first is the canonical name
    materials: tuple[str, ...]
    variants: tuple[Variant, Variant]
    accessories: tuple[Accessory, ...]
    sizes: tuple[Size, ...] = ()
    details: tuple[str, ...] = ()  # description phrases that never decide relevance


_SHOE_SIZES: tuple[Size, ...] = tuple(
    Size(f"Size {n}", (f"size {n}", f"sz {n}", f"uk {n}")) for n in range(6, 13)
)
_CLOTHING_SIZES: tuple[Size, ...] = (
    Size("Size XS", ("xs", "extra small", "size xs")),
    Size("Size S", ("small", "size s", "size small")),
    Size("Size M", ("medium", "size m", "size medium")),
    Size("Size L", ("large", "size l", "size large")),
    Size("Size XL", ("xl", "extra large", "size xl")),
)
_CORDLESS = (
    Variant("Cordless", ("cordless", "cord free")),
    Variant("Corded", ("corded", "mains powered")),
)

CATEGORIES: dict[str, Category] = {
    "sneakers": Category(
        ("sneakers", "trainers", "kicks"),
        ("leather", "canvas", "mesh", "suede"),
        (Variant("Slip-On", ("slip on", "laceless")), Variant("Lace-Up", ("lace up",))),
        (
            Accessory("Replacement Laces", ("laces for {host}", "{host} laces"), ("cotton",)),
            Accessory("Cleaning Kit", ("{host} cleaner", "cleaning kit for {host}"), ("plastic",)),
        ),
        _SHOE_SIZES,
        ("a cushioned sole", "a padded collar"),
    ),
    "running shoes": Category(
        ("running shoes", "runners", "jogging shoes"),
        ("mesh", "knit", "synthetic"),
        (Variant("Trail", ("trail", "off road")), Variant("Road", ("road", "for pavement"))),
        (
            Accessory("Insoles", ("insoles for {host}", "{host} insoles"), ("foam", "gel")),
            Accessory("Shoe Bag", ("bag for {host}", "{host} bag"), ("nylon", "cotton")),
        ),
        _SHOE_SIZES,
        ("a responsive foam midsole", "reflective trims"),
    ),
    "boots": Category(
        ("boots", "ankle boots"),
        ("leather", "suede", "rubber"),
        (Variant("Waterproof", ("waterproof", "water proof")), Variant("Not Waterproof")),
        (
            Accessory(
                "Waterproofing Spray",
                ("waterproofing spray for {host}", "{host} waterproofing spray"),
                ("silicone",),
            ),
            Accessory("Boot Trees", ("trees for {host}", "{host} trees"), ("cedar", "plastic")),
        ),
        _SHOE_SIZES,
        ("a grippy sole", "a side zip"),
    ),
    "dress": Category(
        ("dress", "gown", "frock"),
        ("cotton", "silk", "linen", "polyester"),
        (
            Variant("Sleeveless", ("sleeveless",)),
            Variant("Long Sleeve", ("long sleeve", "with sleeves")),
        ),
        (
            Accessory("Garment Bag", ("garment bag for {host}", "{host} garment bag"), ("nylon",)),
            Accessory("Belt", ("belt for {host}", "{host} belt"), ("leather", "fabric")),
        ),
        _CLOTHING_SIZES,
        ("a flattering a-line cut", "hidden pockets"),
    ),
    "jeans": Category(
        ("jeans", "denims"),
        ("denim", "stretch denim"),
        (
            Variant("High Rise", ("high rise", "high waisted")),
            Variant("Low Rise", ("low rise",)),
        ),
        (
            Accessory(
                "Repair Patches", ("patches for {host}", "{host} repair patches"), ("denim",)
            ),
            Accessory("Belt", ("belt for {host}", "{host} belt"), ("leather", "canvas")),
        ),
        _CLOTHING_SIZES,
        ("a slim fit", "five pockets"),
    ),
    "t-shirt": Category(
        ("t-shirt", "tee", "tshirt"),
        ("cotton", "organic cotton", "linen"),
        (Variant("Long Sleeve", ("long sleeve",)), Variant("Short Sleeve", ("short sleeve",))),
        (
            Accessory(
                "Folding Board", ("folding board for {host}", "{host} folding board"), ("plastic",)
            ),
        ),
        _CLOTHING_SIZES,
        ("a crew neck", "a soft brushed finish"),
    ),
    "jacket": Category(
        ("jacket", "coat"),
        ("leather", "wool", "nylon", "denim"),
        (
            Variant("Hooded", ("hooded", "with hood")),
            Variant("Without Hood", ("no hood", "without hood")),
        ),
        (
            Accessory("Replacement Hood", ("hood for {host}", "{host} hood"), ("nylon", "wool")),
            Accessory("Zip Pullers", ("zip pullers for {host}", "{host} zip"), ("metal",)),
        ),
        _CLOTHING_SIZES,
        ("a water-repellent finish", "zip pockets"),
    ),
    "sofa": Category(
        ("sofa", "couch", "settee"),
        ("velvet", "linen", "leather", "fabric"),
        (
            Variant("Reclining", ("reclining", "recliner")),
            Variant("Non-Reclining", ("non reclining", "fixed back")),
        ),
        (
            Accessory(
                "Cover",
                ("{host} cover", "cover for {host}", "slipcover for {host}"),
                ("cotton", "velvet", "polyester"),
            ),
            Accessory(
                "Replacement Cushions", ("cushions for {host}", "{host} cushions"), ("foam",)
            ),
            Accessory("Legs", ("legs for {host}", "{host} legs"), ("oak", "metal")),
        ),
        (
            Size("2-Seater", ("2 seater", "two seater", "loveseat")),
            Size("3-Seater", ("3 seater", "three seater")),
            Size("Corner", ("corner", "l shaped", "sectional")),
        ),
        ("deep seat cushions", "solid wood legs"),
    ),
    "lamp": Category(
        ("lamp", "table lamp", "light"),
        ("brass", "ceramic", "glass", "steel"),
        (Variant("Dimmable", ("dimmable",)), Variant("Non-Dimmable", ("non dimmable",))),
        (
            Accessory("Shade", ("{host} shade", "shade for {host}"), ("fabric", "paper")),
            Accessory("Replacement Bulb", ("bulb for {host}", "{host} bulb"), ("glass",)),
        ),
        (),
        ("a fabric shade", "an adjustable arm"),
    ),
    "mug": Category(
        ("mug", "cup", "coffee mug"),
        ("ceramic", "glass", "enamel", "stainless steel"),
        (
            Variant("Dishwasher Safe", ("dishwasher safe",)),
            Variant("Hand Wash Only", ("hand wash",)),
        ),
        (
            Accessory("Lid", ("lid for {host}", "{host} lid"), ("silicone", "bamboo")),
            Accessory("Warmer", ("{host} warmer", "warmer for {host}"), ("steel",)),
        ),
        (
            Size("300 ml", ("300 ml", "300ml", "small")),
            Size("450 ml", ("450 ml", "450ml", "large")),
        ),
        ("a comfortable handle", "a glossy glaze"),
    ),
    "backpack": Category(
        ("backpack", "rucksack", "daypack"),
        ("nylon", "canvas", "leather", "polyester"),
        (
            Variant("With Laptop Sleeve", ("with laptop sleeve", "laptop")),
            Variant("No Laptop Sleeve"),
        ),
        (
            Accessory("Rain Cover", ("rain cover for {host}", "{host} rain cover"), ("nylon",)),
            Accessory(
                "Replacement Straps", ("straps for {host}", "{host} straps"), ("nylon", "leather")
            ),
        ),
        (Size("20 L", ("20l", "20 litre")), Size("30 L", ("30l", "30 litre"))),
        ("water bottle pockets", "comfortable straps"),
    ),
    "headphones": Category(
        ("headphones", "headset", "earphones"),
        ("plastic", "aluminium", "leather"),
        (Variant("Wireless", ("wireless", "bluetooth")), Variant("Wired", ("wired",))),
        (
            Accessory("Ear Pads", ("ear pads for {host}", "{host} ear pads"), ("leather", "foam")),
            Accessory("Case", ("case for {host}", "{host} case"), ("plastic", "fabric")),
            Accessory("Replacement Cable", ("cable for {host}", "{host} cable"), ("plastic",)),
        ),
        (),
        ("noise cancelling", "a foldable design"),
    ),
    "watch": Category(
        ("watch", "wristwatch"),
        ("stainless steel", "leather", "silicone", "titanium"),
        (Variant("Water Resistant", ("water resistant",)), Variant("Not Water Resistant")),
        (
            Accessory(
                "Strap",
                ("{host} strap", "strap for {host}", "{host} band"),
                ("leather", "silicone"),
            ),
            Accessory("Battery", ("battery for {host}", "{host} battery"), ("lithium",)),
        ),
        (Size("38 mm", ("38mm", "38 mm")), Size("42 mm", ("42mm", "42 mm"))),
        ("a sapphire glass face", "a date window"),
    ),
    "rug": Category(
        ("rug", "carpet", "area rug"),
        ("wool", "jute", "cotton", "polypropylene"),
        (
            Variant("Machine Washable", ("washable", "machine washable")),
            Variant("Dry Clean Only", ("dry clean",)),
        ),
        (
            Accessory("Rug Pad", ("pad for {host}", "{host} pad"), ("felt", "rubber")),
            Accessory("Gripper Tape", ("gripper for {host}", "{host} gripper"), ("rubber",)),
        ),
        (
            Size("120x170 cm", ("120x170", "120 x 170")),
            Size("160x230 cm", ("160x230", "160 x 230")),
            Size("200x290 cm", ("200x290", "200 x 290")),
        ),
        ("a low pile", "hand-woven edges"),
    ),
    "water bottle": Category(
        ("water bottle", "flask", "drinks bottle"),
        ("stainless steel", "glass", "plastic"),
        (
            Variant("Insulated", ("insulated", "keeps cold")),
            Variant("Non-Insulated", ("non insulated",)),
        ),
        (
            Accessory("Replacement Lid", ("lid for {host}", "{host} lid"), ("plastic", "steel")),
            Accessory("Cleaning Brush", ("brush for {host}", "{host} brush"), ("nylon",)),
        ),
        (
            Size("500 ml", ("500ml", "500 ml")),
            Size("750 ml", ("750ml", "750 ml")),
            Size("1 L", ("1l", "1 litre", "1 liter")),
        ),
        ("a leak-proof lid", "a carry loop"),
    ),
    "circular saw": Category(
        ("circular saw", "power saw", "saw"),
        ("aluminium", "magnesium", "steel"),
        _CORDLESS,
        (
            Accessory(
                "Replacement Blade",
                ("blade for {host}", "{host} blade", "replacement blade for {host}"),
                ("carbide", "steel"),
            ),
            Accessory("Battery", ("battery for {host}", "{host} battery"), ("lithium",)),
        ),
        (),
        ("a laser guide", "a dust port"),
    ),
    "drill": Category(
        ("drill", "power drill", "drill driver"),
        ("plastic", "aluminium", "steel"),
        _CORDLESS,
        (
            Accessory("Drill Bits", ("bits for {host}", "{host} bits"), ("steel", "titanium")),
            Accessory("Battery", ("battery for {host}", "{host} battery"), ("lithium",)),
            Accessory("Charger", ("charger for {host}", "{host} charger"), ("plastic",)),
        ),
        (),
        ("a two-speed gearbox", "an led work light"),
    ),
    "grill": Category(
        ("grill", "bbq", "barbecue"),
        ("stainless steel", "cast iron", "enamel"),
        (Variant("Gas", ("gas", "propane")), Variant("Charcoal", ("charcoal",))),
        (
            Accessory("Cover", ("cover for {host}", "{host} cover"), ("polyester", "vinyl")),
            Accessory("Cleaning Brush", ("brush for {host}", "{host} brush"), ("steel",)),
        ),
        (),
        ("a side shelf", "a built-in thermometer"),
    ),
    "lawn mower": Category(
        ("lawn mower", "mower", "lawnmower"),
        ("steel", "plastic", "aluminium"),
        (Variant("Electric", ("electric",)), Variant("Petrol", ("petrol", "gas powered"))),
        (
            Accessory("Replacement Blade", ("blade for {host}", "{host} blade"), ("steel",)),
            Accessory("Grass Bag", ("grass bag for {host}", "{host} grass bag"), ("fabric",)),
        ),
        (),
        ("a 40 cm cutting width", "height adjustment"),
    ),
}

#: Raw contact details a seller might paste into a description (masked on output).
_CONTACT_SNIPPETS: tuple[str, ...] = (
    "Questions? Email sales@{brand}-store.com",
    "Call us on +44 20 7946 0{n:03d}",
    "Orders by phone: (555) 013-{n:04d}",
    "Contact {brand}.support@example.org",
)
_CONTACT_RATE = 0.03
_TYPO_RATE = 0.15
_FILLER_RATE = 0.25
#: How often a query or a title uses a category synonym rather than the canonical name.
_QUERY_SYNONYM_RATE = 0.55
_TITLE_SYNONYM_RATE = 0.25
#: How often a product's colour is written as a shade, and a query's colour too.
_PRODUCT_SHADE_RATE = 0.6
_QUERY_SHADE_RATE = 0.15
_QUERY_COLOUR_SYNONYM_RATE = 0.3
_ACCESSORY_FAMILY_SHARE = 0.3
_ACCESSORY_QUERY_RATE = 0.15
#: How often an accessory's title names the item size / variant it fits.
_FITS_RATE = 0.5
#: Variant labels that read oddly in "made for" phrases ("for Not Waterproof Boots").
_NEGATIVE = ("Not ", "No ", "Without ", "Non-")
_MAX_VARIANTS = 3
#: A catalogue holds at least this many products per candidate slot (room for hard negatives).
_MIN_CATALOGUE_PER_CANDIDATE = 12
_MAX_SAME_TYPE_SCAN = 64
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
#: Candidates per list of each kind (inclusive ranges), taken in this order up to k.
_CANDIDATE_QUOTAS: tuple[tuple[str, int, int], ...] = (
    ("exact", 0, 1),
    ("partial", 2, 3),
    ("related", 2, 3),
    ("disqualified", 2, 3),
    ("lookalike", 1, 2),
)
#: Shoppers: light ones issue 1, 2 or 3 queries with these probabilities.
_LIGHT_SHOPPER_QUERIES = (0.6, 0.25, 0.15)
#: Heavy shoppers issue at least this many queries, about _HEAVY_MEAN_QUERIES on average.
_HEAVY_MIN_QUERIES = 4
_HEAVY_MEAN_QUERIES = 8
#: A merchant with at least this many queries always has a heavy shopper.
_MIN_QUERIES_FOR_HEAVY = 8
_HEAVY_SHARE_RANGE = (0.15, 0.4)
_VALIDATION_HEAVY_SHARE = 0.25


@dataclass(frozen=True)
class SynthConfig:
    """Size and seed of a synthetic marketplace."""

    merchants: int = field(default=4, metadata={"help": "number of merchants (federated nodes)"})
    queries_per_merchant: int = field(
        default=60,
        metadata={
            "help": "average queries per merchant; sizes follow a power law, so the "
            "largest merchant has several times this and the smallest fewer"
        },
    )
    candidates_per_query: int = field(
        default=10, metadata={"help": "products shown for each query (impressions per query)"}
    )
    validation_queries: int = field(
        default=80, metadata={"help": "queries in the server's pooled validation shard"}
    )
    seed: int = field(default=0, metadata={"help": "random seed; same seed, same marketplace"})
    user_id_salt: str = field(
        default="ecrec-synth",
        metadata={"help": "mixed with the seed into the key that hashes synthetic shopper ids"},
    )

    def check(self) -> None:
        """Refuse sizes that cannot make a usable marketplace, naming the option."""
        if self.merchants < 1:
            raise ConfigError(f"merchants must be at least 1, got {self.merchants}")
        if self.queries_per_merchant < 1:
            raise ConfigError(
                f"queries_per_merchant must be at least 1, got {self.queries_per_merchant}"
            )
        if not 2 <= self.candidates_per_query <= 100:
            raise ConfigError(
                f"candidates_per_query must be between 2 and 100, got {self.candidates_per_query}"
            )
        if self.validation_queries < 0:
            raise ConfigError(
                f"validation_queries must not be negative, got {self.validation_queries}"
            )
        if self.seed < 0:
            raise ConfigError(f"seed must not be negative, got {self.seed}")
        if not self.user_id_salt:
            raise ConfigError("user_id_salt must not be empty")


def config_help() -> dict[str, str]:
    """Help text of every :class:`SynthConfig` field, for the CLI."""
    return {f.name: f.metadata.get("help", "") for f in fields(SynthConfig)}


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


@dataclass
class Marketplace:
    """Per-merchant impression frames plus the server's pooled validation shard."""

    merchants: dict[str, pd.DataFrame]
    validation: pd.DataFrame
    #: Provenance written into ``manifest.json`` (config, source, rules).
    meta: dict[str, Any] = field(default_factory=dict)
    #: The hidden intent behind each synthetic ``query_id`` (empty for imported data).
    #: Kept in memory for tests and benchmarks; never written to disk.
    intents: dict[str, QueryIntent] = field(default_factory=dict)


def relevance(intent: QueryIntent, product: ProductFacts) -> int:
    """The hidden relevance rule (see the module docstring): a grade in 0..3."""
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


# --------------------------------------------------------------------------- #
# Reading facts and intents back from text (what a ranker has to learn to do)
# --------------------------------------------------------------------------- #

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


# --------------------------------------------------------------------------- #
# Catalogues
# --------------------------------------------------------------------------- #


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


def _choice(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _title_case(text: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def _merchant_sizes(config: SynthConfig) -> list[int]:
    total = config.queries_per_merchant * config.merchants
    weights = 1.0 / np.arange(1, config.merchants + 1) ** 1.2
    raw = total * weights / weights.sum()
    floor = max(3, config.queries_per_merchant // 10)
    return [max(floor, round(x)) for x in raw]


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


# --------------------------------------------------------------------------- #
# Queries
# --------------------------------------------------------------------------- #


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


def _shared_words(intent: QueryIntent, facts: ProductFacts) -> int:
    """How many of the query's named attributes a product shares (lexical bait)."""
    pairs = (
        (intent.colour, facts.colour),
        (intent.brand, facts.brand),
        (intent.material, facts.material),
        (intent.excluded_material, facts.material),
        (intent.size, facts.size),
    )
    return sum(wanted is not None and wanted == actual for wanted, actual in pairs)


def _bait(intent: QueryIntent, product: _Product) -> int:
    """Shared attributes plus what an accessory's title says it fits: lexical bait."""
    fits = sum(
        wanted is not None and wanted in product.fits for wanted in (intent.size, intent.feature)
    )
    return _shared_words(intent, product.facts) + fits


def _sample(
    rng: np.random.Generator, pool: Sequence[int], n: int, weights: Sequence[float] | None = None
) -> list[int]:
    n = min(n, len(pool))
    if n <= 0:
        return []
    p = None
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        p = w / w.sum()
    return [int(pool[int(i)]) for i in rng.choice(len(pool), size=n, replace=False, p=p)]


def _bounded(rng: np.random.Generator, indices: list[int], limit: int) -> list[int]:
    if len(indices) <= limit:
        return indices
    picked = np.sort(rng.choice(len(indices), size=limit, replace=False))
    return [indices[int(j)] for j in picked]


def _pick_candidates(
    rng: np.random.Generator, pool: _Pool, intent: QueryIntent, target_index: int, k: int
) -> list[int]:
    """The target, then exact matches, partial matches and hard negatives, then filler."""
    products = pool.products
    target = products[target_index]
    same_kind = [i for i in pool.by_kind[(intent.category, intent.accessory)] if i != target_index]
    same_kind = _bounded(rng, same_kind, _MAX_SAME_TYPE_SCAN)
    grades = [relevance(intent, products[i].facts) for i in same_kind]
    groups: dict[str, tuple[list[int], list[float]]] = {}
    partial = [i for i, g in zip(same_kind, grades, strict=True) if 1 <= g <= 2]
    exact = [i for i, g in zip(same_kind, grades, strict=True) if g == 3]
    groups["exact"] = (exact, [1.0] * len(exact))
    # Variants of the target itself (same family, another colour or size) come first.
    groups["partial"] = (partial, [1 + 3 * (products[i].family == target.family) for i in partial])
    disqualified = [i for i, g in zip(same_kind, grades, strict=True) if g == 0]
    groups["disqualified"] = (
        disqualified,
        [1 + _shared_words(intent, products[i].facts) for i in disqualified],
    )
    if intent.accessory is None:
        related = list(pool.accessories[intent.category])
    else:
        related = pool.items[intent.category] + [
            i
            for i in pool.accessories[intent.category]
            if products[i].facts.accessory != intent.accessory
        ]
    related = _bounded(rng, related, _MAX_SAME_TYPE_SCAN)
    groups["related"] = (related, [1 + 2 * _bait(intent, products[i]) for i in related])
    other = [
        i
        for i in range(len(products))
        if products[i].facts.category != intent.category
        and (
            products[i].facts.brand == (intent.brand or target.facts.brand)
            or products[i].facts.colour == (intent.colour or target.facts.colour)
        )
    ]
    other = _bounded(rng, other, _MAX_SAME_TYPE_SCAN)
    groups["lookalike"] = (other, [1 + 2 * _shared_words(intent, products[i].facts) for i in other])

    chosen = [target_index]
    taken = {target_index}
    for name, lo, hi in _CANDIDATE_QUOTAS:
        indices, weights = groups[name]
        free = [(i, w) for i, w in zip(indices, weights, strict=True) if i not in taken]
        want = min(int(rng.integers(lo, hi + 1)), k - len(chosen))
        if not free or want <= 0:
            continue
        picked = _sample(rng, [i for i, _ in free], want, [w for _, w in free])
        chosen.extend(picked)
        taken.update(picked)
    # Fill up with more of the same kind and its accessories before anything random.
    spare = [i for i in (*same_kind, *related) if i not in taken]
    chosen.extend(_sample(rng, spare, k - len(chosen)))
    taken.update(chosen)
    while len(chosen) < k:  # catalogues hold at least 12k products, so this ends fast
        i = int(rng.integers(len(products)))
        if i not in taken:
            taken.add(i)
            chosen.append(i)
    return chosen


def _mix_tiers(
    rng: np.random.Generator,
    pool: _Pool,
    tiers: dict[str, str],
    intent: QueryIntent,
    chosen: list[int],
) -> list[int]:
    """Make a pooled list show both merchant tiers: swap the last non-target if needed."""
    present = {tiers[pool.products[i].merchant_id] for i in chosen}
    missing = sorted(set(tiers.values()) - present)
    if not missing or len(chosen) < 2:
        return chosen
    tier = missing[0]
    taken = set(chosen)
    candidates = [
        i
        for m, t in tiers.items()
        if t == tier
        for i in pool.by_merchant.get(m, [])
        if i not in taken
    ]
    same_category = [i for i in candidates if pool.products[i].facts.category == intent.category]
    replacement = _sample(rng, same_category or candidates, 1)
    if replacement:
        chosen = [*chosen[:-1], replacement[0]]
    return chosen


# --------------------------------------------------------------------------- #
# Shoppers
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Shopper:
    user_id_hash: str
    segment: str


def shopper_hash_key(config: SynthConfig) -> bytes:
    """The key synthetic shopper ids are hashed under: derived from the seed, so reproducible."""
    return synthetic_hash_key(f"{config.user_id_salt}\x1fseed={config.seed}")


def _query_counts(rng: np.random.Generator, n_queries: int, heavy_share: float) -> list[int]:
    """Queries per shopper: a few heavy shoppers take ``heavy_share``, the rest issue 1-3."""
    counts: list[int] = []
    if n_queries >= _MIN_QUERIES_FOR_HEAVY:
        heavy_queries = max(_HEAVY_MIN_QUERIES, round(heavy_share * n_queries))
        n_heavy = max(
            1, min(round(heavy_queries / _HEAVY_MEAN_QUERIES), heavy_queries // _HEAVY_MIN_QUERIES)
        )
        extra = rng.multinomial(
            heavy_queries - n_heavy * _HEAVY_MIN_QUERIES, rng.dirichlet(np.ones(n_heavy))
        )
        counts = [_HEAVY_MIN_QUERIES + int(e) for e in extra]
    remaining = n_queries - sum(counts)
    while remaining > 0:
        n = min(remaining, 1 + int(rng.choice(3, p=_LIGHT_SHOPPER_QUERIES)))
        counts.append(n)
        remaining -= n
    return counts


def _shoppers_of_queries(
    rng: np.random.Generator,
    *,
    prefix: str,
    n_queries: int,
    heavy_share: float,
    segment_mix: np.ndarray,
    key: bytes,
) -> list[_Shopper]:
    """The shopper behind each of ``n_queries`` queries, in a shuffled order."""
    counts = _query_counts(rng, n_queries, heavy_share)
    segments = rng.choice(len(USER_SEGMENTS), size=len(counts), p=segment_mix)
    shoppers = [
        _Shopper(hash_user_id(f"{prefix}-u{n:05d}", key=key), USER_SEGMENTS[int(s)])
        for n, s in enumerate(segments)
    ]
    owners = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(owners)
    return [shoppers[int(o)] for o in owners]


# --------------------------------------------------------------------------- #
# Rows, frames, the marketplace
# --------------------------------------------------------------------------- #


@dataclass
class _Merchant:
    merchant_id: str
    tier: str
    n_queries: int
    pool: _Pool
    segment_mix: np.ndarray
    heavy_share: float


def _pick_target(rng: np.random.Generator, pool: _Pool, indices: Sequence[int]) -> int:
    """A target product: an accessory now and then, an item otherwise."""
    accessories = [i for i in indices if pool.products[i].facts.accessory is not None]
    items = [i for i in indices if pool.products[i].facts.accessory is None]
    if accessories and (not items or rng.random() < _ACCESSORY_QUERY_RATE):
        return int(_choice(rng, accessories))
    return int(_choice(rng, items))


def _query_rows(
    rng: np.random.Generator,
    pool: _Pool,
    tiers: dict[str, str],
    *,
    target_index: int,
    query_id: str,
    shopper: _Shopper,
    k: int,
    mix_tiers: bool,
) -> tuple[list[dict[str, Any]], QueryIntent]:
    intent = _make_intent(rng, pool.products[target_index].facts)
    query_text = _query_text(rng, intent, typo=rng.random() < _TYPO_RATE)
    candidates = _pick_candidates(rng, pool, intent, target_index, k)
    if mix_tiers:
        candidates = _mix_tiers(rng, pool, tiers, intent, candidates)
    rels = np.array([relevance(intent, pool.products[i].facts) for i in candidates])
    scores = rels + rng.normal(0.0, PRODUCTION_NOISE, size=len(candidates))
    order = np.argsort(-scores, kind="stable")
    rows = []
    for rank, idx in enumerate(order, start=1):
        product = pool.products[candidates[idx]]
        rel = int(rels[idx])
        p_click = ATTRACTIVENESS[rel] / rank**EXAMINATION_EXPONENT
        fields_ = product.row_fields()
        rows.append(
            {
                "query_id": query_id,
                "query": query_text,
                "product_id": product.product_id,
                "product_title": product.title,
                "product_text": compose_product_text(fields_),
                "merchant_id": product.merchant_id,
                "label": int(rng.random() < p_click),
                "user_segment": shopper.segment,
                "merchant_tier": tiers[product.merchant_id],
                "relevance": rel,
                "position": rank,
                "user_id_hash": shopper.user_id_hash,
                **fields_,
            }
        )
    return rows, intent


def _to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMN_ORDER))
    for column in ("label", "relevance", "position"):
        df[column] = df[column].astype("int64")
    # Shopper ids are already hashed; this masks contact details in the text.
    df = desensitize_frame(df)
    return df[list(COLUMN_ORDER)].reset_index(drop=True)


def synthesize(config: SynthConfig | None = None) -> Marketplace:
    """Build the marketplace described by ``config`` (deterministic for its seed)."""
    config = config or SynthConfig()
    config.check()
    seeds = np.random.SeedSequence(config.seed).spawn(config.merchants + 2)
    streams = [np.random.default_rng(s) for s in seeds]
    setup_rng, validation_rng = streams[0], streams[-1]
    ids = merchant_ids(config.merchants)
    sizes = _merchant_sizes(config)
    tiers = tiers_by_size(dict(zip(ids, sizes, strict=True)))
    k = config.candidates_per_query
    key = shopper_hash_key(config)

    merchants: list[_Merchant] = []
    catalogues: list[_Product] = []
    for index, merchant_id in enumerate(ids):
        category_mix = setup_rng.dirichlet(np.full(len(CATEGORIES), 0.3))
        segment_mix = setup_rng.dirichlet(np.full(len(USER_SEGMENTS), 2.0))
        heavy_share = float(setup_rng.uniform(*_HEAVY_SHARE_RANGE))
        rng = streams[index + 1]
        n_products = max(_MIN_CATALOGUE_PER_CANDIDATE * k, 3 * sizes[index])
        catalogue = _make_catalogue(
            rng, merchant_id, n_products, category_mix, first_family=len(catalogues)
        )
        catalogues.extend(catalogue)
        merchants.append(
            _Merchant(
                merchant_id=merchant_id,
                tier=tiers[merchant_id],
                n_queries=sizes[index],
                pool=_Pool(catalogue),
                segment_mix=segment_mix,
                heavy_share=heavy_share,
            )
        )

    frames: dict[str, pd.DataFrame] = {}
    intents: dict[str, QueryIntent] = {}
    for index, merchant in enumerate(merchants):
        rng = streams[index + 1]
        shoppers = _shoppers_of_queries(
            rng,
            prefix=merchant.merchant_id,
            n_queries=merchant.n_queries,
            heavy_share=merchant.heavy_share,
            segment_mix=merchant.segment_mix,
            key=key,
        )
        rows: list[dict[str, Any]] = []
        all_indices = range(len(merchant.pool.products))
        for q, shopper in enumerate(shoppers):
            query_id = f"{merchant.merchant_id}-q{q:05d}"
            query_rows, intents[query_id] = _query_rows(
                rng,
                merchant.pool,
                tiers,
                target_index=_pick_target(rng, merchant.pool, all_indices),
                query_id=query_id,
                shopper=shopper,
                k=k,
                mix_tiers=False,
            )
            rows.extend(query_rows)
        frames[merchant.merchant_id] = _to_frame(rows)

    share = np.array(sizes, dtype=float) / sum(sizes)
    pooled = _Pool(catalogues)
    pooled_mix = share @ np.stack([m.segment_mix for m in merchants])
    shoppers = _shoppers_of_queries(
        validation_rng,
        prefix="val",
        n_queries=config.validation_queries,
        heavy_share=_VALIDATION_HEAVY_SHARE,
        segment_mix=pooled_mix / pooled_mix.sum(),
        key=key,
    )
    rows = []
    for q, shopper in enumerate(shoppers):
        merchant = merchants[int(validation_rng.choice(len(merchants), p=share))]
        query_id = f"val-q{q:05d}"
        query_rows, intents[query_id] = _query_rows(
            validation_rng,
            pooled,
            tiers,
            target_index=_pick_target(
                validation_rng, pooled, pooled.by_merchant[merchant.merchant_id]
            ),
            query_id=query_id,
            shopper=shopper,
            k=k,
            mix_tiers=True,
        )
        rows.extend(query_rows)
    validation = _to_frame(rows)

    meta = {
        "source": "synthetic",
        "config": asdict(config),
        "seed": config.seed,
        "relevance_rule": RELEVANCE_RULE,
        "click_model": CLICK_MODEL,
        "shopper_model": SHOPPER_MODEL,
        "user_id_hash_key_id": hash_key_id(key),
        "merchant_categories": {
            m.merchant_id: sorted({p.category_label for p in m.pool.products}) for m in merchants
        },
    }
    return Marketplace(merchants=frames, validation=validation, meta=meta, intents=intents)


def write_marketplace(
    marketplace: Marketplace, out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> list[Path]:
    """Write one parquet file per merchant, ``validation.parquet`` and ``manifest.json``.

    An existing marketplace in ``out_dir`` is never silently replaced: without
    ``overwrite`` it is an error; with it, stale merchant files from the old
    marketplace are removed so the folder describes exactly one marketplace.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    pattern = MERCHANT_FILE_PATTERN.format(merchant_id="*")
    existing = sorted(out.glob(pattern)) if out.exists() else []
    has_old = bool(existing) or (out / MANIFEST_FILE).exists() or (out / VALIDATION_FILE).exists()
    if has_old and not overwrite:
        raise DataError(
            f"{out}: already holds a marketplace; "
            "choose another folder or pass --force to replace it"
        )
    out.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    counts: dict[str, int] = {}
    tiers: dict[str, str] = {}
    for merchant_id, df in sorted(marketplace.merchants.items()):
        path = out / MERCHANT_FILE_PATTERN.format(merchant_id=merchant_id)
        write_impressions(df, path)
        written.append(path)
        counts[merchant_id] = len(df)
        if len(df):
            tiers[merchant_id] = str(df["merchant_tier"].iloc[0])
    for stale in existing:
        if stale not in written:
            stale.unlink()
    validation_path = out / VALIDATION_FILE
    write_impressions(marketplace.validation, validation_path)
    written.append(validation_path)

    manifest = {
        **marketplace.meta,
        "files": [p.name for p in written],
        "rows": {"merchants": counts, "validation": len(marketplace.validation)},
        "queries": {
            "merchants": {
                m: int(df["query_id"].nunique()) for m, df in sorted(marketplace.merchants.items())
            },
            "validation": int(marketplace.validation["query_id"].nunique())
            if "query_id" in marketplace.validation
            else 0,
        },
        "merchant_tiers": tiers,
    }
    manifest_path = out / MANIFEST_FILE
    tmp = manifest_path.with_name(f".{MANIFEST_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, manifest_path)
    written.append(manifest_path)
    return written
