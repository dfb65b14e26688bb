"""Assembling the marketplace: merchants, their catalogues and queries, the validation shard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ecrec.data.desensitize import desensitize_frame, hash_key_id
from ecrec.data.schema import COLUMN_ORDER, compose_product_text, merchant_ids, tiers_by_size
from ecrec.data.synth.catalogue import _make_catalogue, _Pool, _Product
from ecrec.data.synth.categories import CATEGORIES
from ecrec.data.synth.config import SynthConfig
from ecrec.data.synth.draws import _choice
from ecrec.data.synth.marketplace import Marketplace
from ecrec.data.synth.negatives import _mix_tiers, _pick_candidates
from ecrec.data.synth.queries import _TYPO_RATE, _make_intent, _query_text
from ecrec.data.synth.rules import (
    ATTRACTIVENESS,
    CLICK_MODEL,
    EXAMINATION_EXPONENT,
    PRODUCTION_NOISE,
    RELEVANCE_RULE,
    QueryIntent,
    relevance,
)
from ecrec.data.synth.shoppers import (
    _HEAVY_SHARE_RANGE,
    _VALIDATION_HEAVY_SHARE,
    SHOPPER_MODEL,
    _Shopper,
    _shoppers_of_queries,
    shopper_hash_key,
)
from ecrec.data.synth.vocabulary import USER_SEGMENTS

_ACCESSORY_QUERY_RATE = 0.15
#: A catalogue holds at least this many products per candidate slot (room for hard negatives).
_MIN_CATALOGUE_PER_CANDIDATE = 12


def _merchant_sizes(config: SynthConfig) -> list[int]:
    total = config.queries_per_merchant * config.merchants
    weights = 1.0 / np.arange(1, config.merchants + 1) ** 1.2
    raw = total * weights / weights.sum()
    floor = max(3, config.queries_per_merchant // 10)
    return [max(floor, round(x)) for x in raw]


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
