"""Ranking metrics grouped by query.

Every metric is computed per query and then averaged over queries, because a
search ranker is judged on each result page, not on a pooled list of rows.

Conventions (shared by every function here, so numbers are comparable):

* ``scores`` are model logits; higher means "rank first".
* **Ties in scores are broken against the model**: among items with equal
  scores, the less relevant item is ranked first (for ``ctr@k``, the unclicked
  one). This is deterministic and independent of the order rows are stored in,
  so a constant scorer gets no credit for data that happens to be sorted by
  label. (sklearn's ``ndcg_score`` instead averages over tied orderings; the two
  agree whenever scores have no ties.)
* Graded ``relevance`` drives the gains of NDCG; the binary notion "relevant"
  used by MRR, MAP, recall and precision is ``relevance >= relevant_threshold``.
* A query with no relevant item has no defined NDCG (ideal DCG is 0), MRR, AP
  or recall; those per-query values are NaN and such queries are skipped when
  averaging. Precision@k and ctr@k are defined for every query.
* precision@k divides by ``k`` even when a query has fewer than ``k`` items
  (the empty slots count as misses); ctr@k is the mean label over the items
  actually shown, i.e. the first ``min(k, n)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from sklearn.metrics import log_loss, roc_auc_score

Gain = Literal["exponential", "linear"]
PerQueryMetric = Literal["ndcg", "dcg", "mrr", "ap", "recall", "precision", "ctr"]

__all__ = [
    "average_precision",
    "dcg_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "per_group_metric",
    "per_query_metrics",
    "precision_at_k",
    "ranking_metrics",
    "ranks_within_queries",
    "recall_at_k",
]


# --------------------------------------------------------------------------- #
# Vectorised core: one sort for all queries, per-query sums with bincount.
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Per-query metrics (one query's items).
# --------------------------------------------------------------------------- #


def dcg_at_k(
    relevance: ArrayLike, scores: ArrayLike, k: int = 10, *, gain: Gain = "exponential"
) -> float:
    """DCG@k of one query: sum of gain / log2(rank + 1) over the model's top k."""
    return float(_single(relevance, scores, k=k, gain=gain, threshold=1.0).dcg[0])


def ndcg_at_k(
    relevance: ArrayLike, scores: ArrayLike, k: int = 10, *, gain: Gain = "exponential"
) -> float:
    """NDCG@k of one query, in [0, 1]; NaN when no item has positive gain.

    ``gain="exponential"`` (2^rel - 1) rewards getting the most relevant items
    first; ``gain="linear"`` (rel) matches ``sklearn.metrics.ndcg_score``.
    """
    return float(_single(relevance, scores, k=k, gain=gain, threshold=1.0).ndcg[0])


def mrr_at_k(
    relevance: ArrayLike, scores: ArrayLike, k: int = 10, *, relevant_threshold: float = 1
) -> float:
    """Reciprocal rank of the first relevant item in the top k (0 if none there).

    NaN when the query has no relevant item at all.
    """
    g = _single(relevance, scores, k=k, gain="linear", threshold=relevant_threshold)
    return float(g.mrr[0])


def average_precision(
    relevance: ArrayLike, scores: ArrayLike, *, relevant_threshold: float = 1
) -> float:
    """Average precision over the full ranked list (binary: rel >= threshold).

    NaN when the query has no relevant item.
    """
    k = max(int(np.size(relevance)), 1)  # the whole list
    g = _single(relevance, scores, k=k, gain="linear", threshold=relevant_threshold)
    return float(g.ap[0])


def recall_at_k(
    relevance: ArrayLike, scores: ArrayLike, k: int = 10, *, relevant_threshold: float = 1
) -> float:
    """Share of the query's relevant items that the model puts in its top k (NaN if none)."""
    g = _single(relevance, scores, k=k, gain="linear", threshold=relevant_threshold)
    return float(g.recall[0])


def precision_at_k(
    relevance: ArrayLike, scores: ArrayLike, k: int = 10, *, relevant_threshold: float = 1
) -> float:
    """Relevant items in the model's top k, divided by k (short lists count misses)."""
    g = _single(relevance, scores, k=k, gain="linear", threshold=relevant_threshold)
    return float(g.precision[0])


# --------------------------------------------------------------------------- #
# Grouped metrics (many queries).
# --------------------------------------------------------------------------- #


def _prepare(
    query_ids: Sequence[Any] | ArrayLike,
    labels: ArrayLike,
    scores: ArrayLike,
    relevance: ArrayLike | None,
) -> tuple[
    NDArray[np.intp], pd.Index, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]
]:
    qids = (
        np.asarray(query_ids, dtype=object)
        if not isinstance(query_ids, pd.Series)
        else query_ids.to_numpy()
    )
    if qids.ndim != 1:
        raise ValueError(f"query_ids must be one-dimensional, got shape {qids.shape}")
    n = qids.shape[0]
    if n == 0:
        raise ValueError("no rows to evaluate")
    if pd.isna(qids).any():
        raise ValueError("query_ids contains missing values")
    lab = _as_1d("labels", labels, n=n)
    sc = _as_1d("scores", scores, n=n)
    rel = lab if relevance is None else _as_1d("relevance", relevance, n=n)
    codes, uniques = pd.factorize(qids, sort=False)
    return codes.astype(np.intp), pd.Index(uniques), lab, sc, rel


def per_query_metrics(
    *,
    query_ids: Sequence[Any] | ArrayLike,
    labels: ArrayLike,
    scores: ArrayLike,
    relevance: ArrayLike | None = None,
    k: int = 10,
    relevant_threshold: float = 1,
    gain: Gain = "exponential",
) -> pd.DataFrame:
    """One row per query (indexed by query id, in order of first appearance).

    Columns: ``dcg, ndcg, mrr, ap, recall, precision, ctr, items``; NaN marks a
    metric that is undefined for that query (no relevant item). Fairness audits
    and per-merchant reports slice this frame.
    """
    k = _check_k(k)
    codes, keys, lab, sc, rel = _prepare(query_ids, labels, scores, relevance)
    g = _grouped(codes, keys, rel, sc, k=k, gain=gain, threshold=relevant_threshold)
    ctr = _ctr(codes, len(keys), lab, sc, k=k)
    items = np.bincount(codes, minlength=len(keys))
    return pd.DataFrame(
        {
            "dcg": g.dcg,
            "ndcg": g.ndcg,
            "mrr": g.mrr,
            "ap": g.ap,
            "recall": g.recall,
            "precision": g.precision,
            "ctr": ctr,
            "items": items,
        },
        index=keys.rename("query_id"),
    )


def per_group_metric(
    *,
    query_ids: Sequence[Any] | ArrayLike,
    labels: ArrayLike,
    scores: ArrayLike,
    relevance: ArrayLike | None = None,
    k: int = 10,
    relevant_threshold: float = 1,
    gain: Gain = "exponential",
    metric: PerQueryMetric = "ndcg",
) -> pd.Series:
    """A per-query metric (NDCG@k by default) as a Series indexed by query id.

    Queries where the metric is undefined are kept, with NaN, so the index
    lines up with every query in the input; drop them with ``.dropna()``.
    """
    if metric not in {"ndcg", "dcg", "mrr", "ap", "recall", "precision", "ctr"}:
        raise ValueError(f"unknown per-query metric {metric!r}")
    frame = per_query_metrics(
        query_ids=query_ids,
        labels=labels,
        scores=scores,
        relevance=relevance,
        k=k,
        relevant_threshold=relevant_threshold,
        gain=gain,
    )
    name = "map" if metric == "ap" else f"{metric}@{k}"
    return frame[metric].rename(name)


def ranking_metrics(
    *,
    query_ids: Sequence[Any] | ArrayLike,
    labels: ArrayLike,
    scores: ArrayLike,
    relevance: ArrayLike | None = None,
    k: int = 10,
    relevant_threshold: float = 1,
    gain: Gain = "exponential",
) -> dict[str, float]:
    """The evaluation summary written to ``metrics.jsonl`` each round.

    Keys: ``ndcg@k, mrr@k, map, recall@k, precision@k, auc, logloss, ctr@k,
    queries``. Ranking metrics use graded ``relevance`` when given, else the
    click ``labels``; they are means over queries where defined (see module
    docstring). ``auc`` and ``logloss`` treat rows as independent binary
    predictions of ``labels`` from ``sigmoid(scores)``; ``auc`` is NaN when the
    labels contain a single class, since it is undefined there. ``ctr@k`` is an
    effect proxy: the mean click label in each query's top k, averaged over
    queries.
    """
    k = _check_k(k)
    codes, keys, lab, sc, rel = _prepare(query_ids, labels, scores, relevance)
    if not np.all((lab == 0) | (lab == 1)):
        raise ValueError("labels must be 0/1 (click or purchase)")
    g = _grouped(codes, keys, rel, sc, k=k, gain=gain, threshold=relevant_threshold)
    ctr = _ctr(codes, len(keys), lab, sc, k=k)

    # AUC is rank-based: use the logits themselves, because sigmoid saturates
    # to exactly 0 or 1 for large |logit| and would invent ties.
    auc = float(roc_auc_score(lab, sc)) if np.unique(lab).size == 2 else math.nan
    logloss = float(log_loss(lab, expit(sc), labels=[0, 1]))

    return {
        f"ndcg@{k}": _nanmean(g.ndcg),
        f"mrr@{k}": _nanmean(g.mrr),
        "map": _nanmean(g.ap),
        f"recall@{k}": _nanmean(g.recall),
        f"precision@{k}": float(g.precision.mean()),
        "auc": auc,
        "logloss": logloss,
        f"ctr@{k}": float(ctr.mean()),
        "queries": len(keys),
    }
