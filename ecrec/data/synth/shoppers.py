"""Shoppers: who issues each query, its segment and its keyed-hash id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecrec.data.desensitize import hash_user_id, synthetic_hash_key
from ecrec.data.synth.config import SynthConfig
from ecrec.data.synth.vocabulary import USER_SEGMENTS

#: Plain-language statement of how shoppers and their ids are made (also in the manifest).
SHOPPER_MODEL = (
    "each shopper belongs to one merchant (validation shoppers to the platform) and has one "
    "user_segment; most issue 1-3 queries, a few heavy shoppers issue many; user_id_hash is "
    "hash_user_id of the shopper id under a key derived from the seed and user_id_salt."
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
