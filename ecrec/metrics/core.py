"""The vectorised core of the ranking metrics: one sort for all queries, per-query sums with
``bincount``, ties broken against the model (see :mod:`ecrec.metrics.ranking`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

Gain = Literal["exponential", "linear"]


@dataclass(frozen=True)
class _Grouped:
    """Per-query metric values for queries ``0..n_queries-1`` (NaN = undefined)."""

    keys: pd.Index
    dcg: NDArray[np.float64]
    ndcg: NDArray[np.float64]
    mrr: NDArray[np.float64]
    ap: NDArray[np.float64]
    recall: NDArray[np.float64]
    precision: NDArray[np.float64]


def _as_1d(name: str, values: ArrayLike, *, n: int | None = None) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values, expected {n}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _gains(relevance: NDArray[np.float64], gain: Gain) -> NDArray[np.float64]:
    if gain == "exponential":
        return np.exp2(relevance) - 1.0
    if gain == "linear":
        return relevance
    raise ValueError(f"gain must be 'exponential' or 'linear', got {gain!r}")


def _ranks(codes: NDArray[np.intp], order: NDArray[np.intp], n_groups: int) -> NDArray[np.intp]:
    """0-based rank of each sorted row within its query (rows sorted by query first)."""
    sorted_codes = codes[order]
    sizes = np.bincount(sorted_codes, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return np.arange(codes.shape[0]) - starts[sorted_codes]


def ranks_within_queries(
    query_codes: NDArray[np.intp], scores: ArrayLike, tiebreak: ArrayLike
) -> NDArray[np.int64]:
    """1-based rank of each row within its query (rows in any order).

    Higher ``scores`` rank first; ties go to the lower ``tiebreak`` first (pass
    the relevance to break ties against the model, as every metric here does).
    ``query_codes`` are small non-negative integers, e.g. from ``pd.factorize``.
    """
    codes = np.asarray(query_codes, dtype=np.intp)
    order = np.lexsort((np.asarray(tiebreak), -np.asarray(scores, dtype=np.float64), codes))
    rank = np.empty(codes.shape[0], dtype=np.int64)
    n_groups = int(codes.max()) + 1 if codes.size else 0
    rank[order] = _ranks(codes, order, n_groups) + 1
    return rank


def _grouped(
    codes: NDArray[np.intp],
    keys: pd.Index,
    relevance: NDArray[np.float64],
    scores: NDArray[np.float64],
    *,
    k: int,
    gain: Gain,
    threshold: float,
) -> _Grouped:
    n_groups = len(keys)
    if np.any(relevance < 0):
        raise ValueError("relevance must be non-negative")
    gains = _gains(relevance, gain)
    binary = (relevance >= threshold).astype(np.float64)

    # Model ranking: query, then score descending, then relevance ascending
    # (ties broken against the model). np.lexsort sorts by the last key first.
    order = np.lexsort((relevance, -scores, codes))
    rank = _ranks(codes, order, n_groups)
    q = codes[order]
    in_top = rank < k
    discount = 1.0 / np.log2(rank + 2.0)

    dcg = np.bincount(q, weights=gains[order] * discount * in_top, minlength=n_groups)

    ideal_order = np.lexsort((-relevance, codes))
    ideal_rank = _ranks(codes, ideal_order, n_groups)
    ideal_top = ideal_rank < k
    idcg = np.bincount(
        codes[ideal_order],
        weights=gains[ideal_order] / np.log2(ideal_rank + 2.0) * ideal_top,
        minlength=n_groups,
    )

    rel_sorted = binary[order]
    n_rel = np.bincount(q, weights=rel_sorted, minlength=n_groups)
    hits_top = np.bincount(q, weights=rel_sorted * in_top, minlength=n_groups)

    # First relevant item in the top k has the largest reciprocal rank.
    rr = np.zeros(n_groups)
    np.maximum.at(rr, q, rel_sorted * in_top / (rank + 1.0))

    # Average precision over the full list: precision at each relevant position.
    cum_hits = np.cumsum(rel_sorted)
    group_offset = np.concatenate(([0.0], np.cumsum(n_rel)[:-1]))
    hits_so_far = cum_hits - group_offset[q]
    ap_sum = np.bincount(q, weights=rel_sorted * hits_so_far / (rank + 1.0), minlength=n_groups)

    has_rel = n_rel > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ndcg = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)
        mrr = np.where(has_rel, rr, np.nan)
        ap = np.where(has_rel, ap_sum / np.where(has_rel, n_rel, 1.0), np.nan)
        recall = np.where(has_rel, hits_top / np.where(has_rel, n_rel, 1.0), np.nan)
    precision = hits_top / k
    return _Grouped(keys, dcg, ndcg, mrr, ap, recall, precision)


def _ctr(
    codes: NDArray[np.intp],
    n_groups: int,
    labels: NDArray[np.float64],
    scores: NDArray[np.float64],
    *,
    k: int,
) -> NDArray[np.float64]:
    order = np.lexsort((labels, -scores, codes))  # ties: unclicked first
    rank = _ranks(codes, order, n_groups)
    q = codes[order]
    in_top = rank < k
    clicks = np.bincount(q, weights=labels[order] * in_top, minlength=n_groups)
    shown = np.bincount(q, weights=in_top.astype(np.float64), minlength=n_groups)
    return clicks / shown


def _single(
    relevance: ArrayLike, scores: ArrayLike, *, k: int, gain: Gain, threshold: float
) -> _Grouped:
    rel = _as_1d("relevance", relevance)
    if rel.shape[0] == 0:
        raise ValueError("a query needs at least one item")
    sc = _as_1d("scores", scores, n=rel.shape[0])
    codes = np.zeros(rel.shape[0], dtype=np.intp)
    return _grouped(codes, pd.Index([0]), rel, sc, k=_check_k(k), gain=gain, threshold=threshold)


def _nanmean(values: NDArray[np.float64]) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan
