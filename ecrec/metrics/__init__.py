"""Ranking metrics grouped by query."""

from ecrec.metrics.ranking import (
    average_precision,
    dcg_at_k,
    mrr_at_k,
    ndcg_at_k,
    per_group_metric,
    per_query_metrics,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

__all__ = [
    "average_precision",
    "dcg_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "per_group_metric",
    "per_query_metrics",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
]
