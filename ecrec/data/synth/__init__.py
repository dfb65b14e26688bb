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

Modules
-------
``vocabulary`` and ``categories`` (the words), ``config`` (:class:`SynthConfig`),
``rules`` (intents, facts, relevance, click model), ``reading`` (text back to
facts and intents), ``catalogue``, ``queries``, ``negatives`` (candidate lists),
``shoppers``, ``build`` (:func:`synthesize`) and ``marketplace`` (the
:class:`Marketplace` and its data folder); ``draws`` holds the shared seeded draws.
"""

from ecrec.data.synth.build import synthesize
from ecrec.data.synth.categories import CATEGORIES, Accessory, Category, Size, Variant
from ecrec.data.synth.config import SynthConfig, config_help
from ecrec.data.synth.marketplace import Marketplace, write_marketplace
from ecrec.data.synth.reading import parse_product, parse_query
from ecrec.data.synth.rules import (
    ATTRACTIVENESS,
    CLICK_MODEL,
    EXAMINATION_EXPONENT,
    PRODUCTION_NOISE,
    RELEVANCE_RULE,
    ProductFacts,
    QueryIntent,
    relevance,
)
from ecrec.data.synth.shoppers import SHOPPER_MODEL, shopper_hash_key
from ecrec.data.synth.vocabulary import (
    BRANDS,
    COLOUR_SHADES,
    COLOURS,
    EXCLUSIONS,
    FILLER_PREFIXES,
    FILLER_SUFFIXES,
    MODEL_NAMES,
    PRICE_BAND_PROBS,
    PRICE_BANDS,
    PRICE_WORDS,
    USER_SEGMENTS,
)

__all__ = [
    "ATTRACTIVENESS",
    "BRANDS",
    "CATEGORIES",
    "CLICK_MODEL",
    "COLOURS",
    "COLOUR_SHADES",
    "EXAMINATION_EXPONENT",
    "EXCLUSIONS",
    "FILLER_PREFIXES",
    "FILLER_SUFFIXES",
    "MODEL_NAMES",
    "PRICE_BANDS",
    "PRICE_BAND_PROBS",
    "PRICE_WORDS",
    "PRODUCTION_NOISE",
    "RELEVANCE_RULE",
    "SHOPPER_MODEL",
    "USER_SEGMENTS",
    "Accessory",
    "Category",
    "Marketplace",
    "ProductFacts",
    "QueryIntent",
    "Size",
    "SynthConfig",
    "Variant",
    "config_help",
    "parse_product",
    "parse_query",
    "relevance",
    "shopper_hash_key",
    "synthesize",
    "write_marketplace",
]
