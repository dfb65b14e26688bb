"""Fairness audit of one scoring of the global ranker: the audit that composes the parts.

* Shopper side (:mod:`ecrec.fairness.shopper`): per sensitive column, per-group
  NDCG@k and precision@k (fairlearn ``MetricFrame``), selection rate, TPR and
  FPR, with the gaps between groups.
* Provider side (:mod:`ecrec.fairness.provider`): attention-weighted exposure
  per merchant tier and per merchant against merit-based target exposure
  (:mod:`ecrec.fairness.exposure`).

Every comparison carries a bootstrap interval over queries and is flagged only
when the whole interval lies beyond its threshold; comparisons between groups
with fewer than ``min_queries_per_group`` queries report "too few queries"
(:mod:`ecrec.fairness.uncertainty`). The audit computes and returns; recording
it in the run folder is :func:`ecrec.fairness.store.append_fairness`'s job.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from numpy.typing import ArrayLike

from ecrec.fairness.config import AuditConfig
from ecrec.fairness.inputs import prepare
from ecrec.fairness.provider import provider_section
from ecrec.fairness.shopper import audit_column


def audit_rankings(
    frame: pd.DataFrame,
    scores: ArrayLike,
    *,
    config: AuditConfig | None = None,
) -> dict[str, Any]:
    """Audit one scoring of ``frame`` (rows = impressions) and return a JSON-ready dict.

    Keys: ``config``, ``rows``, ``queries``, ``relevant_label``; ``groups``
    (per audited sensitive column present in the frame: ``by_group`` =
    {group: {queries, queries_with_rows, rows, ndcg@k, precision@k,
    selection_rate, tpr, fpr, positives, negatives, enough_queries}},
    ``mixed_queries`` and ``comparisons`` = {ndcg@k_gap, precision@k_gap,
    demographic_parity_difference, equalized_odds_difference: {value, ci,
    confidence_level, threshold, flag_when, status, groups, too_few_queries,
    message}}); ``missing_columns`` (requested but absent); ``provider``
    (None without a ``merchant_tier`` column; see
    :func:`~ecrec.fairness.provider.provider_section`); ``flags`` (``metric,
    group_column, value, ci, threshold, message``) and ``status_counts``.
    Every number is a finite float, an int, or None.
    """
    config = config or AuditConfig()
    scored = prepare(frame, scores, config)
    comparisons = []
    by_column: dict[str, Any] = {}
    missing = [c for c in config.by if c not in scored.frame.columns]
    for column in config.by:
        if column in scored.frame.columns:
            by_column[column], judged = audit_column(scored, column, config)
            comparisons += judged
    provider, judged = provider_section(scored, config)
    comparisons += judged
    status_counts: dict[str, int] = {}
    for comparison in comparisons:
        status_counts[comparison.status] = status_counts.get(comparison.status, 0) + 1
    return {
        "config": config.to_dict(),
        "rows": len(scored.frame),
        "queries": scored.n_queries,
        "relevant_label": scored.label_rule,
        "groups": by_column,
        "missing_columns": missing,
        "provider": provider,
        "flags": [c.to_flag() for c in comparisons if c.status == "flag"],
        "status_counts": status_counts,
    }
