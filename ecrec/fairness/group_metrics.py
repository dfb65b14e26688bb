"""Per-group metrics of one scoring (fairlearn ``MetricFrame``) and their per-query samples.

* Ranking quality: per-query NDCG@k and precision@k averaged per *query*
  group (``sample_params`` carries the query ids, so each group's metric is
  computed query by query).
* Selection: the scores read as a classifier ("selected" = ``score >=
  threshold``) against the label "relevant", per *row* group: selection rate,
  TPR, FPR, with the counts they rest on.

The bootstrap needs the same numbers as per-query samples: :func:`query_metric_samples`
(one value per query of a group) and :func:`row_count_samples` (per-query
sums of row counts per group), which reproduce the MetricFrame numbers exactly
on the unresampled data.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ecrec.fairness.inputs import ScoredFrame


def per_query_quality(scored: ScoredFrame, k: int) -> pd.DataFrame:
    """NDCG@k and precision@k of every query, indexed by query number (0..n-1)."""
    from ecrec.metrics.ranking import per_query_metrics  # sklearn: import only when auditing

    table = per_query_metrics(
        query_ids=scored.query_codes,
        labels=scored.gains,
        scores=scored.scores,
        relevance=scored.gains,
        k=k,
        relevant_threshold=scored.relevant_threshold,
    )
    return table[["ndcg", "precision"]].reindex(range(scored.n_queries))


def ranking_by_group(scored: ScoredFrame, groups: NDArray[Any], k: int) -> pd.DataFrame:
    """Per-group mean per-query ndcg@k / precision@k and query count (MetricFrame)."""
    from fairlearn.metrics import MetricFrame

    from ecrec.metrics.ranking import per_query_metrics

    def per_query(y_true: Any, y_pred: Any, query_ids: Any) -> pd.DataFrame:
        return per_query_metrics(
            query_ids=np.asarray(query_ids),
            labels=np.asarray(y_true, dtype=np.float64),
            scores=np.asarray(y_pred, dtype=np.float64),
            relevance=np.asarray(y_true, dtype=np.float64),
            k=k,
            relevant_threshold=scored.relevant_threshold,
        )

    def mean_or_nan(values: pd.Series) -> float:
        defined = values.dropna()
        return float(defined.mean()) if len(defined) else math.nan

    def ndcg(y_true: Any, y_pred: Any, query_ids: Any) -> float:
        return mean_or_nan(per_query(y_true, y_pred, query_ids)["ndcg"])

    def precision(y_true: Any, y_pred: Any, query_ids: Any) -> float:
        return mean_or_nan(per_query(y_true, y_pred, query_ids)["precision"])

    def n_queries(y_true: Any, y_pred: Any, query_ids: Any) -> int:
        return int(pd.unique(np.asarray(query_ids)).size)

    names = [f"ndcg@{k}", f"precision@{k}", "queries"]
    frame = MetricFrame(
        metrics=dict(zip(names, (ndcg, precision, n_queries), strict=True)),
        y_true=scored.gains,
        y_pred=scored.scores,
        sensitive_features=pd.Series(groups, name="group"),
        sample_params={name: {"query_ids": scored.query_codes} for name in names},
    )
    return frame.by_group


def selection_by_group(
    scored: ScoredFrame, selected: NDArray[np.bool_], groups: NDArray[Any]
) -> pd.DataFrame:
    """Per-group selection rate, TPR, FPR (fairlearn), with counts to judge them by."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    def positives(y_true: Any, y_pred: Any) -> int:
        return int(np.sum(y_true))

    def negatives(y_true: Any, y_pred: Any) -> int:
        return int(np.size(y_true) - np.sum(y_true))

    def n_queries(y_true: Any, y_pred: Any, query_ids: Any) -> int:
        return int(pd.unique(np.asarray(query_ids)).size)

    with warnings.catch_warnings():
        # Rates of groups without positives/negatives are masked to NaN below.
        warnings.simplefilter("ignore")
        frame = MetricFrame(
            metrics={
                "selection_rate": selection_rate,
                "tpr": true_positive_rate,
                "fpr": false_positive_rate,
                "rows": count,
                "positives": positives,
                "negatives": negatives,
                "queries": n_queries,
            },
            y_true=scored.relevant.astype(int),
            y_pred=selected.astype(int),
            sensitive_features=pd.Series(groups, name="group"),
            sample_params={"queries": {"query_ids": scored.query_codes}},
        )
    table = frame.by_group.copy()
    table.loc[table["positives"] == 0, "tpr"] = np.nan
    table.loc[table["negatives"] == 0, "fpr"] = np.nan
    return table


def query_metric_samples(
    values: pd.Series, query_group: NDArray[Any], names: list[str]
) -> list[NDArray[np.float64]]:
    """Per group in ``names``, its queries' defined values of one per-query metric.

    ``values`` is indexed by query number; ``query_group[q]`` is query q's group.
    """
    array = values.to_numpy(dtype=np.float64)
    defined = ~np.isnan(array)
    return [array[(query_group == name) & defined] for name in names]


def row_count_samples(
    scored: ScoredFrame, groups: NDArray[Any], names: list[str], weights: list[NDArray[Any]]
) -> list[list[NDArray[np.float64]]]:
    """Per group in ``names``, per weight vector: its per-query sum over the group's rows.

    E.g. ``weights=[selected, ones]`` gives each group's selected items and rows
    per query, from which any resample's selection rate is a ratio of sums.
    """
    n_q = scored.n_queries
    out = []
    for name in names:
        in_group = groups == name
        codes = scored.query_codes[in_group]
        out.append(
            [
                np.bincount(codes, weights=np.asarray(w, dtype=np.float64)[in_group], minlength=n_q)
                for w in weights
            ]
        )
    return out


def mean_gap(*samples: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """Largest group mean minus smallest (one sample per group)."""
    means = np.stack([np.mean(s, axis=axis) for s in samples])
    return np.max(means, axis=0) - np.min(means, axis=0)


def ratio_gap(*columns: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """Largest group rate minus smallest, from (numerator, denominator) per group.

    ``columns`` = num_1, den_1, num_2, den_2, ...: per-query counts, so a
    resample's rate of group g is sum(num_g) / sum(den_g).
    """
    rates = np.stack(
        [
            np.sum(columns[i], axis=axis) / np.sum(columns[i + 1], axis=axis)
            for i in range(0, len(columns), 2)
        ]
    )
    return np.max(rates, axis=0) - np.min(rates, axis=0)


def odds_gap(*columns: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """fairlearn's equalized odds difference: the larger of the TPR and FPR gaps.

    ``columns`` = tp_1, pos_1, fp_1, neg_1, tp_2, ...: per-query counts per group.
    """
    tpr = ratio_gap(*[c for i, c in enumerate(columns) if i % 4 < 2], axis=axis)
    fpr = ratio_gap(*[c for i, c in enumerate(columns) if i % 4 >= 2], axis=axis)
    return np.maximum(tpr, fpr)
