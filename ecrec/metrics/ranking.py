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
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from sklearn.metrics import log_loss, roc_auc_score

from ecrec.metrics.core import (
    Gain,
    _as_1d,
    _check_k,
    _ctr,
    _grouped,
    _nanmean,
    ranks_within_queries,
)
from ecrec.metrics.one_query import (
    average_precision,
    dcg_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

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
