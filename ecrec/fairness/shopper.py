"""Shopper-side fairness of one sensitive column: does the ranker serve every group equally?

Four comparisons per column, each a gap (largest group minus smallest) with a
bootstrap interval over queries and a verdict (see :mod:`ecrec.fairness.uncertainty`):

* ``ndcg@k_gap`` and ``precision@k_gap``: mean per-query quality per *query*
  group. **The group of a query is the most common value among its rows**
  (ties: the smallest value); ``mixed_queries`` counts queries that mix
  values. The interval resamples each group's queries on its own (stratified).
* ``demographic_parity_difference`` and ``equalized_odds_difference``
  (fairlearn): the scores read as a classifier (``score >= threshold``)
  against "relevant", per *row* group; TPR (FPR) is undefined for a group
  without relevant (irrelevant) rows, so equalized odds compares only groups
  that have both. The interval resamples whole queries (a cluster bootstrap).

Only groups with at least ``min_queries_per_group`` queries are compared
(for NDCG: queries with a relevant item, where NDCG is defined).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ecrec.fairness.config import AuditConfig
from ecrec.fairness.group_metrics import (
    mean_gap,
    odds_gap,
    per_query_quality,
    query_metric_samples,
    ranking_by_group,
    ratio_gap,
    row_count_samples,
    selection_by_group,
)
from ecrec.fairness.inputs import ScoredFrame, finite_or_none, group_values, query_groups
from ecrec.fairness.uncertainty import (
    Comparison,
    FlagWhen,
    Status,
    bootstrap_interval,
    enough_queries,
    fmt_interval,
    judged,
    not_measured,
    too_few_message,
)

_VERDICT = {"flag": "exceeds", "ok": "is within", "inconclusive": "is inconclusive against"}


def _unmeasurable(
    metric: str, column: str, threshold: float, counts: dict[str, int], minimum: int, what: str
) -> Comparison | None:
    """The comparison's "undefined"/"too few queries" verdict, or None if it can be made."""
    eligible, too_few = enough_queries(counts, minimum)
    common: dict[str, Any] = {"metric": metric, "column": column, "threshold": threshold}
    flag_when: FlagWhen = "above"
    if len([g for g, n in counts.items() if n > 0]) < 2:
        message = f"{column}: {what} is defined for fewer than two groups; nothing to compare"
        status: Status = "undefined"
    elif len(eligible) < 2:
        message = too_few_message(column, what, too_few, minimum)
        status = "too few queries"
    else:
        return None
    return not_measured(
        **common,
        flag_when=flag_when,
        status=status,
        groups=eligible,
        too_few=too_few,
        message=message,
    )


def _quality_gap(
    name: str,
    per_query: pd.Series,
    query_group: NDArray[Any],
    groups: list[str],
    *,
    column: str,
    threshold: float,
    config: AuditConfig,
) -> Comparison:
    metric = f"{name}_gap"
    samples = dict(zip(groups, query_metric_samples(per_query, query_group, groups), strict=True))
    counts = {g: int(s.size) for g, s in samples.items()}
    minimum = config.min_queries_per_group
    skipped = _unmeasurable(metric, column, threshold, counts, minimum, name)
    if skipped is not None:
        return skipped
    eligible, too_few = enough_queries(counts, minimum)
    means = {g: float(samples[g].mean()) for g in eligible}
    hi = max(means, key=lambda g: (means[g], g))
    lo = min(means, key=lambda g: (means[g], g))
    value = means[hi] - means[lo]
    interval = bootstrap_interval(
        mean_gap, [samples[g] for g in eligible], paired=False, config=config
    )

    def describe(status: Status) -> str:
        return (
            f"{column}: {name} gap {value:.3f} ({config.confidence_level:.0%} "
            f"{fmt_interval(interval)}) between {hi!r} ({means[hi]:.3f}) and {lo!r} "
            f"({means[lo]:.3f}) {_VERDICT[status]} {threshold}"
        )

    return judged(
        metric=metric,
        column=column,
        value=value,
        interval=interval,
        threshold=threshold,
        flag_when="above",
        groups=eligible,
        too_few=too_few,
        describe=describe,
    )


def _row_difference(
    metric: str,
    scored: ScoredFrame,
    row_groups: NDArray[Any],
    counts: dict[str, int],
    weights: list[NDArray[Any]],
    *,
    column: str,
    threshold: float,
    config: AuditConfig,
    what: str,
) -> Comparison:
    """Demographic parity / equalized odds difference with a cluster-bootstrap interval."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    minimum = config.min_queries_per_group
    skipped = _unmeasurable(metric, column, threshold, counts, minimum, what)
    if skipped is not None:
        return skipped
    eligible, too_few = enough_queries(counts, minimum)
    keep = np.isin(row_groups, eligible)
    y_true = scored.relevant[keep].astype(int)
    y_pred = (scored.scores >= config.threshold)[keep].astype(int)
    features = pd.Series(row_groups[keep])
    difference = (
        demographic_parity_difference
        if metric == "demographic_parity_difference"
        else equalized_odds_difference
    )
    value = finite_or_none(difference(y_true, y_pred, sensitive_features=features))
    per_group = row_count_samples(scored, row_groups, eligible, weights)
    columns = [c for group_columns in per_group for c in group_columns]
    # Resample the queries that show the compared groups (others add nothing).
    shown = np.isin(np.arange(scored.n_queries), scored.query_codes[keep])
    statistic = ratio_gap if len(weights) == 2 else odds_gap
    interval = bootstrap_interval(
        statistic, [c[shown] for c in columns], paired=True, config=config
    )

    def describe(status: Status) -> str:
        return (
            f"{column}: {what} {value:.3f} ({config.confidence_level:.0%} "
            f"{fmt_interval(interval)}) at score >= {config.threshold} {_VERDICT[status]} "
            f"{threshold}"
            if value is not None
            else f"{column}: {what} undefined"
        )

    return judged(
        metric=metric,
        column=column,
        value=value,
        interval=interval,
        threshold=threshold,
        flag_when="above",
        groups=eligible,
        too_few=too_few,
        describe=describe,
    )


def audit_column(
    scored: ScoredFrame, column: str, config: AuditConfig
) -> tuple[dict[str, Any], list[Comparison]]:
    """Per-group table and the four comparisons of one sensitive column."""
    k = config.k
    minimum = config.min_queries_per_group
    row_query_group, mixed = query_groups(scored.frame, column)
    query_group = np.empty(scored.n_queries, dtype=object)
    query_group[scored.query_codes] = row_query_group.to_numpy()
    ranking = ranking_by_group(scored, row_query_group.to_numpy(), k)
    row_groups = group_values(scored.frame, column).to_numpy()
    selected = scored.scores >= config.threshold
    selection = selection_by_group(scored, selected, row_groups)

    names = sorted(set(ranking.index.astype(str)) | set(selection.index.astype(str)))
    by_group: dict[str, dict[str, Any]] = {}
    for name in names:
        r = ranking.loc[name] if name in ranking.index else None
        s = selection.loc[name] if name in selection.index else None
        queries = int(r["queries"]) if r is not None else 0
        by_group[name] = {
            "queries": queries,
            "queries_with_rows": int(s["queries"]) if s is not None else 0,
            "rows": int(s["rows"]) if s is not None else 0,
            f"ndcg@{k}": finite_or_none(r[f"ndcg@{k}"]) if r is not None else None,
            f"precision@{k}": finite_or_none(r[f"precision@{k}"]) if r is not None else None,
            "selection_rate": finite_or_none(s["selection_rate"]) if s is not None else None,
            "tpr": finite_or_none(s["tpr"]) if s is not None else None,
            "fpr": finite_or_none(s["fpr"]) if s is not None else None,
            "positives": int(s["positives"]) if s is not None else 0,
            "negatives": int(s["negatives"]) if s is not None else 0,
            "enough_queries": queries >= minimum,
        }

    quality = per_query_quality(scored, k)
    row_queries = {g: row["queries_with_rows"] for g, row in by_group.items()}
    both = {
        g: n
        for g, n in row_queries.items()
        if by_group[g]["positives"] > 0 and by_group[g]["negatives"] > 0
    }
    relevant, ones = scored.relevant, np.ones(len(selected))
    common: dict[str, Any] = {"column": column, "config": config}
    comparisons = [
        _quality_gap(
            f"ndcg@{k}",
            quality["ndcg"],
            query_group,
            names,
            threshold=config.max_ndcg_gap,
            **common,
        ),
        _quality_gap(
            f"precision@{k}",
            quality["precision"],
            query_group,
            names,
            threshold=config.max_precision_gap,
            **common,
        ),
        _row_difference(
            "demographic_parity_difference",
            scored,
            row_groups,
            row_queries,
            [selected, ones],
            threshold=config.max_demographic_parity_difference,
            what="selection-rate difference",
            **common,
        ),
        _row_difference(
            "equalized_odds_difference",
            scored,
            row_groups,
            both,
            [selected & relevant, relevant, selected & ~relevant, ~relevant],
            threshold=config.max_equalized_odds_difference,
            what="equalized odds difference (TPR/FPR gap)",
            **common,
        ),
    ]
    result = {
        "by_group": by_group,
        "mixed_queries": mixed,
        "comparisons": {c.metric: c.to_dict(config.confidence_level) for c in comparisons},
    }
    return result, comparisons
