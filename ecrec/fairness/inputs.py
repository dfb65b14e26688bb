"""The validated inputs of an audit: one scoring of a frame of impressions.

Queries are numbered in sorted query-id order (not row order), so every
per-query sample the bootstrap resamples comes in the same order however the
rows happen to be stored, and the same seed gives the same intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ecrec.errors import DataError
from ecrec.fairness.config import MERCHANT_COLUMN, MISSING_GROUP, PROVIDER_COLUMN, AuditConfig


@dataclass(frozen=True)
class ScoredFrame:
    """A frame (index reset) with its scores and what counts as relevant."""

    frame: pd.DataFrame
    scores: NDArray[np.float64]
    #: Graded relevance when the frame has it, else the click label: NDCG gains and merit.
    gains: NDArray[np.float64]
    relevant: NDArray[np.bool_]
    #: The graded-relevance threshold the ranking metrics use for "relevant".
    relevant_threshold: float
    #: Human-readable rule for "relevant", for reports.
    label_rule: str
    #: Each row's query number, 0..n_queries-1 in sorted query-id order.
    query_codes: NDArray[np.intp]
    n_queries: int


def finite_or_none(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def group_values(frame: pd.DataFrame, column: str) -> pd.Series:
    """A sensitive column as strings, missing values named :data:`MISSING_GROUP`."""
    return frame[column].astype("string").fillna(MISSING_GROUP).astype(str)


def query_groups(frame: pd.DataFrame, column: str) -> tuple[pd.Series, int]:
    """Each row's *query* group (the most common value among the query's rows).

    Ties go to the smallest value. Returns the per-row query group and how many
    queries mix several values.
    """
    values = group_values(frame, column)
    qids = frame["query_id"]
    counts = (
        pd.DataFrame({"q": qids.to_numpy(), "v": values.to_numpy()})
        .value_counts()
        .rename("n")
        .reset_index()
        .sort_values(["q", "n", "v"], ascending=[True, False, True], kind="stable")
    )
    mode = counts.drop_duplicates("q").set_index("q")["v"]
    mixed = int((counts["q"].value_counts() > 1).sum())
    return qids.map(mode).astype(str), mixed


def _canonical_order(
    frame: pd.DataFrame, scores: NDArray[np.float64], config: AuditConfig
) -> tuple[pd.DataFrame, NDArray[np.float64]]:
    """Rows sorted by query, score, relevance, label and every audited column.

    Sums over rows then run in the same order however the input was stored,
    so results are identical to the last bit (a bootstrap verdict can hinge on
    whether a resample equals the estimate exactly).
    """
    columns = [c for c in (*config.by, PROVIDER_COLUMN, MERCHANT_COLUMN) if c in frame.columns]
    keys = [group_values(frame, c).to_numpy(dtype=str) for c in dict.fromkeys(columns)]
    keys += [frame["label"].to_numpy(dtype=np.float64)]
    if "relevance" in frame.columns:
        keys += [frame["relevance"].to_numpy(dtype=np.float64)]
    codes, _ = pd.factorize(frame["query_id"], sort=True)
    order = np.lexsort((*reversed(keys), -scores, codes))
    return frame.iloc[order].reset_index(drop=True), scores[order]


def prepare(frame: pd.DataFrame, scores: ArrayLike, config: AuditConfig) -> ScoredFrame:
    """Validate one scoring of ``frame`` and derive gains, relevance and query numbers."""
    for column in ("query_id", "label"):
        if column not in frame.columns:
            raise DataError(f"audit: frame has no {column!r} column")
    frame = frame.reset_index(drop=True)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if sc.shape[0] != len(frame):
        raise DataError(f"audit: {sc.shape[0]} scores for {len(frame)} rows")
    if not np.all(np.isfinite(sc)):
        raise DataError("audit: scores contain NaN or infinite values")
    if len(frame) == 0:
        raise DataError("audit: no rows to audit")
    if frame["query_id"].isna().any():
        raise DataError("audit: query_id has missing values")
    frame, sc = _canonical_order(frame, sc, config)
    if "relevance" in frame.columns:
        gains = frame["relevance"].to_numpy(dtype=np.float64)
        threshold = float(config.relevant_threshold)
        label_rule = f"relevance >= {config.relevant_threshold}"
    else:
        gains = frame["label"].to_numpy(dtype=np.float64)
        threshold = 1.0
        label_rule = "label (click) == 1"
    codes, uniques = pd.factorize(frame["query_id"], sort=True)
    return ScoredFrame(
        frame=frame,
        scores=sc,
        gains=gains,
        relevant=gains >= threshold,
        relevant_threshold=threshold,
        label_rule=label_rule,
        query_codes=codes.astype(np.intp),
        n_queries=len(uniques),
    )
