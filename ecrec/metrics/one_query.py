"""Metrics of one query's items (DCG, NDCG, MRR, AP, recall and precision at k)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ecrec.metrics.core import Gain, _single


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
