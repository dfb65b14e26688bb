"""A seeded synthetic marketplace, so that ecrec runs with no downloads.

The marketplace has several merchants, each with its own product catalogue and
search log, plus a pooled validation shard held by the server. It is built to
look like the real problem in the ways that matter for federated ranking:

* **Non-IID merchants.** Each merchant specialises in a few product categories
  (a Dirichlet draw over categories), carries its own subset of brands, and
  serves a different mix of shopper age bands (``user_segment``). Merchant
  sizes follow a power law (merchant ``m00`` is the largest); the largest
  quarter of merchants (at least one) is ``merchant_tier == "large"``.
* **Realistic text.** Products have a brand, colour, category, material, price
  band and a short templated description; queries name some of a target
  product's attributes, use synonyms ("trainers" for sneakers, "gray" for grey,
  "couch" for sofa, "cheap" for the budget price band) and sometimes contain a
  typo. A few raw descriptions contain a seller's e-mail address or phone
  number, which desensitisation masks before anything is returned.

Hidden relevance rule
---------------------
Every impression has a graded ``relevance`` in 0..3, decided only by the
query's intended attributes and the product's attributes:

* 0 if the product's category differs from the query's category;
* otherwise start from 3, subtract 1 if the query names a colour and the
  product has a different colour, and subtract 1 if the query names any of
  brand / material / price band and the product differs in at least one of
  them.

So an exact match is 3, a product of the right category in the wrong colour is
2, and relevance is driven by category words first and colour words second;
tests and explanations rely on that.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecrec.data.desensitize import desensitize_frame
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
    "relevance is 0 if the product's category differs from the query's category; "
    "otherwise it starts at 3, loses 1 if the query names a colour the product does not "
    "have, and loses 1 if the query names a brand, material or price band the product "
    "does not match (so exact matches are 3, right category in the wrong colour is 2)."
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

#: Age bands used as the sensitive ``user_segment`` attribute.
USER_SEGMENTS: tuple[str, ...] = ("18-24", "25-34", "35-54", "55+")

#: Colour -> the words shoppers use for it (the first is the canonical name).
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

PRICE_BANDS: tuple[str, ...] = ("budget", "mid", "premium")
PRICE_BAND_PROBS: tuple[float, ...] = (0.4, 0.4, 0.2)
#: Words a shopper uses to ask for a price band (mid is never asked for).
PRICE_WORDS: dict[str, tuple[str, ...]] = {
    "budget": ("cheap", "budget"),
    "premium": ("premium", "luxury"),
}


@dataclass(frozen=True)
class Category:
    """A product category: what shoppers call it, what it is made of, what it offers."""

    synonyms: tuple[str, ...]  # the first is the canonical name
    materials: tuple[str, ...]
    features: tuple[str, ...]


CATEGORIES: dict[str, Category] = {
    "sneakers": Category(
        ("sneakers", "trainers", "kicks"),
        ("leather", "canvas", "mesh", "suede"),
        ("a cushioned sole", "a padded collar", "flat laces"),
    ),
    "running shoes": Category(
        ("running shoes", "runners", "jogging shoes"),
        ("mesh", "knit", "synthetic"),
        ("a responsive foam midsole", "a breathable upper", "reflective trims"),
    ),
    "boots": Category(
        ("boots", "ankle boots"),
        ("leather", "suede", "rubber"),
        ("a grippy sole", "a side zip", "a warm lining"),
    ),
    "dress": Category(
        ("dress", "gown", "frock"),
        ("cotton", "silk", "linen", "polyester"),
        ("a flattering a-line cut", "hidden pockets", "a tie waist"),
    ),
    "jeans": Category(
        ("jeans", "denims"),
        ("denim", "stretch denim"),
        ("a slim fit", "a high rise", "five pockets"),
    ),
    "t-shirt": Category(
        ("t-shirt", "tee", "tshirt"),
        ("cotton", "organic cotton", "linen"),
        ("a crew neck", "a relaxed fit", "a soft brushed finish"),
    ),
    "jacket": Category(
        ("jacket", "coat"),
        ("leather", "wool", "nylon", "denim"),
        ("a water-repellent finish", "zip pockets", "a detachable hood"),
    ),
    "sofa": Category(
        ("sofa", "couch", "settee"),
        ("velvet", "linen", "leather", "fabric"),
        ("deep seat cushions", "solid wood legs", "removable covers"),
    ),
    "lamp": Category(
        ("lamp", "table lamp", "light"),
        ("brass", "ceramic", "glass", "steel"),
        ("a dimmable bulb", "a fabric shade", "an adjustable arm"),
    ),
    "mug": Category(
        ("mug", "cup", "coffee mug"),
        ("ceramic", "glass", "enamel", "stainless steel"),
        ("a 350 ml capacity", "a comfortable handle", "a dishwasher-safe glaze"),
    ),
    "backpack": Category(
        ("backpack", "rucksack", "daypack"),
        ("nylon", "canvas", "leather", "polyester"),
        ("a padded laptop sleeve", "water bottle pockets", "comfortable straps"),
    ),
    "headphones": Category(
        ("headphones", "headset", "earphones"),
        ("plastic", "aluminium", "leather"),
        ("noise cancelling", "a 30 hour battery", "a foldable design"),
    ),
    "watch": Category(
        ("watch", "wristwatch"),
        ("stainless steel", "leather", "silicone", "titanium"),
        ("a sapphire glass face", "water resistance to 50 m", "a date window"),
    ),
    "rug": Category(
        ("rug", "carpet", "area rug"),
        ("wool", "jute", "cotton", "polypropylene"),
        ("a non-slip backing", "a low pile", "hand-woven edges"),
    ),
    "water bottle": Category(
        ("water bottle", "flask", "drinks bottle"),
        ("stainless steel", "glass", "plastic"),
        ("a leak-proof lid", "double-wall insulation", "a 750 ml capacity"),
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
_TYPO_RATE = 0.08
_SYNONYM_RATE = 0.3
_MAX_SAME_CATEGORY_SCAN = 64
_NAME_PROB = {"colour": 0.6, "brand": 0.25, "material": 0.3, "price_band": 0.2}


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
        default="ecrec-synth", metadata={"help": "salt for hashing synthetic shopper ids"}
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


@dataclass
class Marketplace:
    """Per-merchant impression frames plus the server's pooled validation shard."""

    merchants: dict[str, pd.DataFrame]
    validation: pd.DataFrame
    #: Provenance written into ``manifest.json`` (config, source, rules).
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Product:
    product_id: str
    brand: str
    colour: str
    category: str
    material: str
    price_band: str
    description: str


@dataclass(frozen=True)
class _Query:
    category: str
    colour: str | None
    brand: str | None
    material: str | None
    price_band: str | None


@dataclass
class _Merchant:
    merchant_id: str
    tier: str
    n_queries: int
    catalogue: list[_Product]
    segment_mix: np.ndarray
    user_segments: list[str]
    by_category: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_category = {name: [] for name in CATEGORIES}
        for i, product in enumerate(self.catalogue):
            self.by_category[product.category].append(i)


def relevance(query: _Query, product: _Product) -> int:
    """The hidden relevance rule (see the module docstring)."""
    if product.category != query.category:
        return 0
    rel = 3
    if query.colour is not None and product.colour != query.colour:
        rel -= 1
    others = (
        (query.brand, product.brand),
        (query.material, product.material),
        (query.price_band, product.price_band),
    )
    if any(wanted is not None and wanted != actual for wanted, actual in others):
        rel -= 1
    return rel


def _choice(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _merchant_sizes(config: SynthConfig) -> list[int]:
    total = config.queries_per_merchant * config.merchants
    weights = 1.0 / np.arange(1, config.merchants + 1) ** 1.2
    raw = total * weights / weights.sum()
    floor = max(3, config.queries_per_merchant // 10)
    return [max(floor, round(x)) for x in raw]


def _make_description(rng: np.random.Generator, product: dict[str, str]) -> str:
    cat = CATEGORIES[product["category"]]
    feature = _choice(rng, cat.features)
    text = (
        f"{product['material'].capitalize()} {product['category']} "
        f"in {product['colour']} with {feature}."
    )
    if rng.random() < _CONTACT_RATE:
        snippet = _choice(rng, _CONTACT_SNIPPETS)
        text += " " + snippet.format(brand=product["brand"].lower(), n=int(rng.integers(1000)))
    return text


def _make_catalogue(
    rng: np.random.Generator, merchant_id: str, n_products: int, category_mix: np.ndarray
) -> list[_Product]:
    names = list(CATEGORIES)
    n_brands = int(rng.integers(5, 9))
    brands = [BRANDS[i] for i in sorted(rng.choice(len(BRANDS), size=n_brands, replace=False))]
    colours = list(COLOURS)
    products = []
    for i in range(n_products):
        category = names[int(rng.choice(len(names), p=category_mix))]
        raw = {
            "brand": _choice(rng, brands),
            "colour": _choice(rng, colours),
            "category": category,
            "material": _choice(rng, CATEGORIES[category].materials),
            "price_band": PRICE_BANDS[int(rng.choice(3, p=PRICE_BAND_PROBS))],
        }
        raw["description"] = _make_description(rng, raw)
        products.append(_Product(product_id=f"{merchant_id}-p{i:05d}", **raw))
    return products


def _typo(rng: np.random.Generator, text: str) -> str:
    words = text.split(" ")
    long_words = [i for i, w in enumerate(words) if len(w) >= 4]
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


def _make_query(rng: np.random.Generator, target: _Product) -> tuple[_Query, str]:
    named = {name: rng.random() < p for name, p in _NAME_PROB.items()}
    if target.price_band not in PRICE_WORDS:
        named["price_band"] = False
    query = _Query(
        category=target.category,
        colour=target.colour if named["colour"] else None,
        brand=target.brand if named["brand"] else None,
        material=target.material if named["material"] else None,
        price_band=target.price_band if named["price_band"] else None,
    )

    def surface(options: Sequence[str]) -> str:
        if len(options) > 1 and rng.random() < _SYNONYM_RATE:
            return _choice(rng, options[1:])
        return options[0]

    words = []
    if query.price_band is not None:
        words.append(_choice(rng, PRICE_WORDS[query.price_band]))
    if query.brand is not None:
        words.append(query.brand)
    if query.colour is not None:
        words.append(surface(COLOURS[query.colour]))
    if query.material is not None:
        words.append(query.material)
    words.append(surface(CATEGORIES[query.category].synonyms))
    text = " ".join(words).lower()
    if rng.random() < _TYPO_RATE:
        text = _typo(rng, text)
    return query, text


def _pick_candidates(
    rng: np.random.Generator,
    merchant: _Merchant,
    query: _Query,
    target_index: int,
    k: int,
) -> list[int]:
    """The target, some exact and partial matches, then random products, all distinct."""
    catalogue = merchant.catalogue
    same_category = [i for i in merchant.by_category[query.category] if i != target_index]
    if len(same_category) > _MAX_SAME_CATEGORY_SCAN:  # bound the work for big catalogues
        picked = rng.choice(len(same_category), size=_MAX_SAME_CATEGORY_SCAN, replace=False)
        same_category = [same_category[int(j)] for j in np.sort(picked)]
    grades = [relevance(query, catalogue[i]) for i in same_category]
    exact = [i for i, g in zip(same_category, grades, strict=True) if g == 3]
    partial = [i for i, g in zip(same_category, grades, strict=True) if g < 3]
    chosen = [target_index]
    for pool, lo, hi in ((exact, 0, 3), (partial, 2, 5)):
        n = min(len(pool), int(rng.integers(lo, hi)), k - len(chosen))
        if n > 0:
            chosen.extend(int(i) for i in rng.choice(pool, size=n, replace=False))
    taken = set(chosen)
    while len(chosen) < k:  # the catalogue holds at least 4k products, so this ends fast
        i = int(rng.integers(len(catalogue)))
        if i not in taken:
            taken.add(i)
            chosen.append(i)
    return chosen


def _query_rows(
    rng: np.random.Generator,
    merchant: _Merchant,
    query_id: str,
    k: int,
) -> list[dict[str, Any]]:
    target_index = int(rng.integers(len(merchant.catalogue)))
    query, query_text = _make_query(rng, merchant.catalogue[target_index])
    candidates = _pick_candidates(rng, merchant, query, target_index, k)
    rels = np.array([relevance(query, merchant.catalogue[i]) for i in candidates])
    scores = rels + rng.normal(0.0, PRODUCTION_NOISE, size=len(candidates))
    order = np.argsort(-scores, kind="stable")
    user = int(rng.integers(len(merchant.user_segments)))
    rows = []
    for rank, idx in enumerate(order, start=1):
        product = merchant.catalogue[candidates[idx]]
        rel = int(rels[idx])
        p_click = ATTRACTIVENESS[rel] / rank**EXAMINATION_EXPONENT
        fields_ = {
            "brand": product.brand,
            "colour": product.colour,
            "category": product.category,
            "material": product.material,
            "price_band": product.price_band,
            "description": product.description,
        }
        rows.append(
            {
                "query_id": query_id,
                "query": query_text,
                "product_id": product.product_id,
                "product_title": (
                    f"{product.brand} {product.colour.title()} {product.material.title()} "
                    f"{product.category.title()}"
                ),
                "product_text": compose_product_text(fields_),
                "merchant_id": merchant.merchant_id,
                "label": int(rng.random() < p_click),
                "user_segment": merchant.user_segments[user],
                "merchant_tier": merchant.tier,
                "relevance": rel,
                "position": rank,
                "user_id": f"{merchant.merchant_id}-u{user:05d}",
                **fields_,
            }
        )
    return rows


def _to_frame(rows: list[dict[str, Any]], salt: str) -> pd.DataFrame:
    columns = [c for c in COLUMN_ORDER if c != "user_id_hash"] + ["user_id"]
    df = pd.DataFrame(rows, columns=columns)
    for column in ("label", "relevance", "position"):
        df[column] = df[column].astype("int64")
    df = desensitize_frame(df, salt=salt)
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

    merchants: list[_Merchant] = []
    for index, merchant_id in enumerate(ids):
        category_mix = setup_rng.dirichlet(np.full(len(CATEGORIES), 0.3))
        segment_mix = setup_rng.dirichlet(np.full(len(USER_SEGMENTS), 2.0))
        rng = streams[index + 1]
        n_products = max(4 * k, 2 * sizes[index])
        n_users = max(5, sizes[index] // 2)
        drawn = rng.choice(len(USER_SEGMENTS), size=n_users, p=segment_mix)
        user_segments = [USER_SEGMENTS[int(s)] for s in drawn]
        merchants.append(
            _Merchant(
                merchant_id=merchant_id,
                tier=tiers[merchant_id],
                n_queries=sizes[index],
                catalogue=_make_catalogue(rng, merchant_id, n_products, category_mix),
                segment_mix=segment_mix,
                user_segments=user_segments,
            )
        )

    frames: dict[str, pd.DataFrame] = {}
    for index, merchant in enumerate(merchants):
        rng = streams[index + 1]
        rows: list[dict[str, Any]] = []
        for q in range(merchant.n_queries):
            rows.extend(_query_rows(rng, merchant, f"{merchant.merchant_id}-q{q:05d}", k))
        frames[merchant.merchant_id] = _to_frame(rows, config.user_id_salt)

    share = np.array(sizes, dtype=float) / sum(sizes)
    rows = []
    for q in range(config.validation_queries):
        merchant = merchants[int(validation_rng.choice(len(merchants), p=share))]
        rows.extend(_query_rows(validation_rng, merchant, f"val-q{q:05d}", k))
    validation = _to_frame(rows, config.user_id_salt)

    meta = {
        "source": "synthetic",
        "config": asdict(config),
        "seed": config.seed,
        "relevance_rule": RELEVANCE_RULE,
        "click_model": CLICK_MODEL,
        "merchant_categories": {
            m.merchant_id: sorted({p.category for p in m.catalogue}) for m in merchants
        },
    }
    return Marketplace(merchants=frames, validation=validation, meta=meta)


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
