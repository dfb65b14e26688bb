"""Hard negatives: the candidates shown with a query's target, and mixing merchant tiers."""

from __future__ import annotations

import numpy as np

from ecrec.data.synth.catalogue import _Pool, _Product
from ecrec.data.synth.draws import _bounded, _sample
from ecrec.data.synth.rules import ProductFacts, QueryIntent, relevance

_MAX_SAME_TYPE_SCAN = 64
#: Candidates per list of each kind (inclusive ranges), taken in this order up to k.
_CANDIDATE_QUOTAS: tuple[tuple[str, int, int], ...] = (
    ("exact", 0, 1),
    ("partial", 2, 3),
    ("related", 2, 3),
    ("disqualified", 2, 3),
    ("lookalike", 1, 2),
)


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
