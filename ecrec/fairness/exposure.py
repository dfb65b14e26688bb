"""Provider exposure: the attention each group's products get vs. the attention they merit.

Exposure model (position-based attention over each query's top ``k``):

* ``"log"``: attention ``1 / log2(1 + rank)``, the DCG position discount
  (Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques",
  ACM TOIS 20(4), 2002), as in Singh & Joachims, "Fairness of Exposure in
  Rankings", KDD 2018;
* ``"rbp"``: attention ``patience ** (rank - 1)``, the rank-biased precision
  browsing model (Moffat & Zobel, "Rank-biased precision for measurement of
  retrieval effectiveness", ACM TOIS 27(1), 2008), the user model of expected
  exposure (Diaz, Mitra, Ekstrand, Biega & Carterette, "Evaluating Stochastic
  Rankings with Expected Exposure", CIKM 2020) used by the TREC Fair Ranking track.

Merit is **target exposure** in the sense of Diaz et al. 2020: the exposure an
item would get, in expectation, from an ideal ranker that orders by graded
relevance and shuffles items of equal relevance (equal expected exposure for
equal relevance): each item gets the mean attention of the positions its grade
occupies in the ideal order. A group's **exposure ratio** is its summed
exposure over its summed target exposure (Singh & Joachims's exposure-to-merit
comparison): 1 = exposed as merited, below 1 = under-exposed. In one query the
model's exposure and the target add up to the same total, so the ratio is also
the group's exposure share over its target share.

Ties in score are broken against the model (the less relevant item first), and
items tied on both score and relevance share their positions' attention
equally, so nothing depends on row order.

Hand-written because no maintained library fits: fairlearn has no ranking
metrics; FairRankTune (0.0.7, last released 2023) loops in Python over
items, takes one global item->group map without per-query top-k cut-offs and
needs relevance in [0, 1]; hyperFA*IR tests representation (FA*IR), not
exposure against merit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ecrec.errors import DataError
from ecrec.fairness.config import PROTECTED_PROVIDER, PROVIDER_COLUMN, Attention
from ecrec.fairness.inputs import group_values


def attention_at(
    ranks: NDArray[np.int64], *, k: int, attention: Attention = "log", patience: float = 0.5
) -> NDArray[np.float64]:
    """Attention a searcher pays to each 1-based rank; 0 below the top ``k``."""
    r = ranks.astype(np.float64)
    weights = 1.0 / np.log2(1.0 + r) if attention == "log" else patience ** (r - 1.0)
    return np.where(ranks <= k, weights, 0.0)


def _block_mean(values: NDArray[np.float64], *keys: NDArray[Any]) -> NDArray[np.float64]:
    """Each value replaced by the mean over the rows sharing all ``keys``."""
    frame = pd.DataFrame({f"k{i}": key for i, key in enumerate(keys)})
    grouped = pd.Series(values).groupby([frame[c] for c in frame.columns], sort=False)
    return grouped.transform("mean").to_numpy(dtype=np.float64)


def item_exposure(
    query_codes: NDArray[np.intp],
    scores: NDArray[np.float64],
    gains: NDArray[np.float64],
    *,
    k: int,
    attention: Attention = "log",
    patience: float = 0.5,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(exposure under the model's ranking, target exposure) of every row."""
    from ecrec.metrics.ranking import ranks_within_queries

    rank = ranks_within_queries(query_codes, scores, gains)
    exposure = _block_mean(
        attention_at(rank, k=k, attention=attention, patience=patience), query_codes, scores, gains
    )
    ideal = ranks_within_queries(query_codes, gains, np.zeros_like(gains))
    target = _block_mean(
        attention_at(ideal, k=k, attention=attention, patience=patience), query_codes, gains
    )
    return exposure, target


@dataclass(frozen=True)
class GroupExposure:
    """Per-query exposure and target exposure of each group, over the considered queries."""

    column: str
    names: list[str]
    #: Queries considered (those showing more than one group, with ``mixed_only``).
    queries_considered: int
    #: [group, considered query] summed exposure / target exposure / relevant items.
    exposure: NDArray[np.float64]
    target: NDArray[np.float64]
    relevant: NDArray[np.float64]
    #: Considered queries in which each group has at least one product.
    queries_with_group: NDArray[np.int64]

    def shares(self, table: NDArray[np.float64]) -> dict[str, float | None]:
        total = float(table.sum())
        return {
            g: (float(v) / total if total > 0 else None)
            for g, v in zip(self.names, table.sum(axis=1), strict=True)
        }

    def ratios(self) -> dict[str, float | None]:
        """Each group's exposure / target exposure (None without target exposure)."""
        exposure, target = self.exposure.sum(axis=1), self.target.sum(axis=1)
        return {
            g: (float(e / t) if t > 0 else None)
            for g, e, t in zip(self.names, exposure, target, strict=True)
        }


def group_exposure(
    query_codes: NDArray[np.intp],
    groups: NDArray[Any],
    scores: NDArray[np.float64],
    gains: NDArray[np.float64],
    relevant: NDArray[np.bool_],
    *,
    column: str,
    k: int,
    attention: Attention = "log",
    patience: float = 0.5,
    mixed_only: bool = True,
    include: tuple[str, ...] = (),
) -> GroupExposure:
    """Exposure per group of ``column`` (values per row in ``groups``) and query.

    With ``mixed_only`` only queries whose candidates include more than one
    group are considered: elsewhere the ranking cannot move exposure between
    groups. ``include`` names groups to report even when absent there.
    """
    exposure, target = item_exposure(
        query_codes, scores, gains, k=k, attention=attention, patience=patience
    )
    n_queries = int(query_codes.max()) + 1
    per_query_groups = pd.Series(groups).groupby(query_codes).nunique()
    considered_q = np.zeros(n_queries, dtype=bool)
    considered_q[per_query_groups.index.to_numpy()] = (
        per_query_groups.to_numpy() > 1 if mixed_only else True
    )
    considered = considered_q[query_codes]
    # Renumber the considered queries 0..n-1 (keeping their sorted order).
    local = np.cumsum(considered_q) - 1
    n_local = int(considered_q.sum())
    names = sorted(set(groups[considered].tolist()) | (set(include) if n_local else set()))

    def per_group(weights: NDArray[Any]) -> NDArray[np.float64]:
        rows = np.zeros((len(names), n_local))
        for i, name in enumerate(names):
            mask = considered & (groups == name)
            rows[i] = np.bincount(
                local[query_codes[mask]],
                weights=weights[mask].astype(np.float64),
                minlength=n_local,
            )
        return rows

    shown = per_group(np.ones(len(groups)))
    return GroupExposure(
        column=column,
        names=names,
        queries_considered=n_local,
        exposure=per_group(exposure),
        target=per_group(target),
        relevant=per_group(relevant),
        queries_with_group=(shown > 0).sum(axis=1).astype(np.int64),
    )


def provider_exposure(
    frame: pd.DataFrame,
    scores: ArrayLike,
    *,
    k: int = 10,
    relevant: ArrayLike | None = None,
    gains: ArrayLike | None = None,
    column: str = PROVIDER_COLUMN,
    protected: str = PROTECTED_PROVIDER,
    mixed_only: bool = True,
    attention: Attention = "log",
    patience: float = 0.5,
) -> dict[str, Any]:
    """Exposure shares per provider group vs. target-exposure and relevant-item shares.

    ``relevant`` defaults to ``label == 1`` and ``gains`` (the merit grades) to
    ``relevant``. Returns ``queries_considered``, ``exposure_share``,
    ``target_share``, ``relevant_share``, ``relevant_items``,
    ``exposure_ratios`` (per group) and ``exposure_ratio`` (the protected
    group's; None when it merits no exposure there). Point estimates only; the
    audit adds intervals.
    """
    if column not in frame.columns:
        raise DataError(f"audit: frame has no {column!r} column")
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    rel = (
        frame["label"].to_numpy(dtype=np.float64) >= 1
        if relevant is None
        else np.asarray(relevant, dtype=bool).reshape(-1)
    )
    grades = rel.astype(np.float64) if gains is None else np.asarray(gains, dtype=np.float64)
    codes, _ = pd.factorize(frame["query_id"], sort=True)
    table = group_exposure(
        codes.astype(np.intp),
        group_values(frame, column).to_numpy(),
        sc,
        grades,
        rel,
        column=column,
        k=k,
        attention=attention,
        patience=patience,
        mixed_only=mixed_only,
        include=(protected,),
    )
    ratios = table.ratios()
    return {
        "queries_considered": table.queries_considered,
        "exposure_share": table.shares(table.exposure),
        "target_share": table.shares(table.target),
        "relevant_share": table.shares(table.relevant),
        "relevant_items": {
            g: int(v) for g, v in zip(table.names, table.relevant.sum(axis=1), strict=True)
        },
        "exposure_ratios": ratios,
        "exposure_ratio": ratios.get(protected),
    }
