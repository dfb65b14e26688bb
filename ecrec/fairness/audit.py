"""Fairness audit of the global ranker's rankings (fairlearn).

Two kinds of fairness, each checked against a configured threshold:

* **Shopper side** (per sensitive column, e.g. ``user_segment``): does the
  ranker serve every group equally well? Per-query NDCG@k and precision@k are
  averaged per group through a fairlearn :class:`~fairlearn.metrics.MetricFrame`
  (``sample_params`` carries the query ids, so each group's metric is computed
  query by query); the gap (max - min) of NDCG is flagged. The ranker's
  scores are also read as a classifier ("selected" = ``score >= threshold``,
  the default logit 0 being p = 0.5) against the label "relevant"
  (``relevance >= 2`` when graded relevance exists, else the click label),
  giving per-group selection rate, TPR and FPR, fairlearn's demographic parity
  difference and equalized odds difference.
* **Provider side** (``merchant_tier``): do small merchants get the exposure
  their relevant products merit? Position-discounted exposure
  ``1 / log2(1 + rank)`` in each query's top k is summed per tier and turned
  into shares, and compared with each tier's share of the relevant items in the
  same queries: ``exposure_ratio = small exposure share / small relevant share``.

Grouping choices (documented because they change numbers):

* Ranking metrics are per query, so a query needs one group: **the group of a
  query is the most common value among its rows** (ties: the smallest value).
  Queries are almost always single-segment (one shopper issues a query);
  ``mixed_queries`` counts the ones that are not.
* Selection metrics are per row (each impression is a decision), grouped by
  the row's own value; for ``user_segment`` this is the same as the query's.
* Groups with fewer than ``min_group_queries`` queries are reported but left
  out of the gaps and differences: a handful of queries is noise, not bias.
  TPR (FPR) is undefined for a group with no relevant (irrelevant) rows, so
  the equalized odds difference only compares groups that have both.
* Provider exposure is only meaningful where the ranker chooses between tiers,
  so ``exposure_ratio`` uses queries whose candidates include both tiers;
  ``exposure_ratio_all_queries`` (over every query) is reported for context but
  not flagged: in a single-merchant query the ranking cannot move exposure
  between tiers, and the synthetic marketplace's queries are all of that kind.

Ties in scores are broken against the model (the less relevant item first), as
in :mod:`ecrec.metrics.ranking`, so a constant scorer earns nothing.

Every number in the returned dict is a finite float, int, or ``None``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ecrec.errors import ConfigError, DataError, EcrecError
from ecrec.runfolder import atomic_write_json

FAIRNESS_FILE = "fairness.json"
PROVIDER_COLUMN = "merchant_tier"
#: The provider group whose exposure is protected.
PROTECTED_PROVIDER = "small"
MISSING_GROUP = "(missing)"

__all__ = [
    "FAIRNESS_FILE",
    "AuditConfig",
    "append_fairness",
    "audit_rankings",
    "config_help",
    "provider_exposure",
    "query_groups",
    "read_fairness",
]


@dataclass(frozen=True)
class AuditConfig:
    """What the audit measures and the thresholds that raise a flag."""

    k: int = field(default=10, metadata={"help": "cut-off for ndcg@k, precision@k and exposure"})
    threshold: float = field(
        default=0.0,
        metadata={
            "help": 'score (logit) at or above which an item counts as "selected"; 0 = p 0.5'
        },
    )
    by: tuple[str, ...] = field(
        default=("user_segment", "merchant_tier"),
        metadata={"help": "sensitive columns to compare groups of (comma-separated)"},
    )
    max_ndcg_gap: float = field(
        default=0.1, metadata={"help": "flag when the ndcg@k gap between groups exceeds this"}
    )
    max_demographic_parity_difference: float = field(
        default=0.1, metadata={"help": "flag when the selection-rate difference exceeds this"}
    )
    max_equalized_odds_difference: float = field(
        default=0.1, metadata={"help": "flag when the larger of the TPR/FPR gaps exceeds this"}
    )
    min_exposure_ratio: float = field(
        default=0.8,
        metadata={
            "help": "flag when small merchants' exposure share / their share of relevant "
            "items falls below this"
        },
    )
    relevant_threshold: int = field(
        default=2, metadata={"help": "graded relevance at or above which an item is relevant"}
    )
    min_group_queries: int = field(
        default=5,
        metadata={"help": "groups with fewer queries are reported but not compared (noise)"},
    )

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or self.k < 1:
            raise ConfigError(f"audit k must be >= 1, got {self.k}")
        object.__setattr__(self, "by", tuple(self.by))
        if not self.by:
            raise ConfigError("audit --by must name at least one column")
        for name in (
            "max_ndcg_gap",
            "max_demographic_parity_difference",
            "max_equalized_odds_difference",
            "min_exposure_ratio",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"audit {name.replace('_', '-')} must be >= 0, got {value}")
        if not math.isfinite(self.threshold):
            raise ConfigError(f"audit threshold must be finite, got {self.threshold}")
        if self.min_group_queries < 1:
            raise ConfigError(f"audit min-group-queries must be >= 1, got {self.min_group_queries}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["by"] = list(self.by)
        return out


def config_help() -> dict[str, str]:
    """Help text of every :class:`AuditConfig` field, for the CLI."""
    return {f.name: f.metadata.get("help", "") for f in fields(AuditConfig)}


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name].astype("string").fillna(MISSING_GROUP).astype(str)


def query_groups(frame: pd.DataFrame, column: str) -> tuple[pd.Series, int]:
    """Each row's *query* group (the most common value among the query's rows).

    Returns the per-row query group and how many queries mix several values.
    """
    values = _column(frame, column)
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


def _ranks(
    query_codes: NDArray[np.intp], scores: NDArray[np.float64], tiebreak: NDArray[np.float64]
) -> NDArray[np.int64]:
    """1-based rank of each row within its query; ties broken against the model."""
    order = np.lexsort((tiebreak, -scores, query_codes))
    sorted_codes = query_codes[order]
    sizes = np.bincount(sorted_codes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - starts[sorted_codes] + 1
    return rank


def _prepare(
    frame: pd.DataFrame, scores: ArrayLike, config: AuditConfig
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_], str]:
    """Scores, graded gains and the binary "relevant" label, validated."""
    for column in ("query_id", "label"):
        if column not in frame.columns:
            raise DataError(f"audit: frame has no {column!r} column")
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if sc.shape[0] != len(frame):
        raise DataError(f"audit: {sc.shape[0]} scores for {len(frame)} rows")
    if not np.all(np.isfinite(sc)):
        raise DataError("audit: scores contain NaN or infinite values")
    if len(frame) == 0:
        raise DataError("audit: no rows to audit")
    if "relevance" in frame.columns:
        gains = frame["relevance"].to_numpy(dtype=np.float64)
        relevant = gains >= config.relevant_threshold
        label_rule = f"relevance >= {config.relevant_threshold}"
    else:
        gains = frame["label"].to_numpy(dtype=np.float64)
        relevant = gains >= 1
        label_rule = "label (click) == 1"
    return sc, gains, relevant, label_rule


# --------------------------------------------------------------------------- #
# Provider exposure
# --------------------------------------------------------------------------- #


def provider_exposure(
    frame: pd.DataFrame,
    scores: ArrayLike,
    *,
    k: int = 10,
    relevant: ArrayLike | None = None,
    column: str = PROVIDER_COLUMN,
    protected: str = PROTECTED_PROVIDER,
    mixed_only: bool = True,
) -> dict[str, Any]:
    """Position-discounted exposure per provider group vs its share of relevant items.

    Each query's top ``k`` items get exposure ``1 / log2(1 + rank)`` (ties in
    score go to the less relevant item first; items tied on score and relevance
    share their positions' exposure equally); exposure
    and relevant items (``relevant``, default ``label == 1``) are summed per
    group over the considered queries (with ``mixed_only``, those whose
    candidates include more than one group) and turned into shares.
    ``exposure_ratio`` is the protected group's exposure share divided by its
    relevant share (None when it has no relevant items there).
    """
    if column not in frame.columns:
        raise DataError(f"audit: frame has no {column!r} column")
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    rel = (
        frame["label"].to_numpy(dtype=np.float64) >= 1
        if relevant is None
        else np.asarray(relevant, dtype=bool).reshape(-1)
    )
    groups = _column(frame, column).to_numpy()
    codes, _ = pd.factorize(frame["query_id"], sort=False)
    codes = codes.astype(np.intp)
    rank = _ranks(codes, sc, rel.astype(np.float64))
    per_query_groups = pd.Series(groups).groupby(codes).nunique().to_numpy()
    considered_q = per_query_groups > 1 if mixed_only else np.ones(len(per_query_groups), bool)
    considered = considered_q[codes]
    position_exposure = np.where(rank <= k, 1.0 / np.log2(1.0 + rank), 0.0)
    # Items tied on both score and relevance share their positions' exposure
    # equally (the expectation over random tie orders), so the result does not
    # depend on the order rows happen to be stored in.
    tie_block = pd.DataFrame({"q": codes, "s": sc, "r": rel})
    exposure = (
        pd.Series(position_exposure)
        .groupby([tie_block["q"], tie_block["s"], tie_block["r"]])
        .transform("mean")
        .to_numpy()
        * considered
    )
    names = sorted(set(groups[considered].tolist()) | ({protected} if considered.any() else set()))
    exp_by = {g: float(exposure[groups == g].sum()) for g in names}
    rel_by = {g: float((rel & considered)[groups == g].sum()) for g in names}
    exp_total, rel_total = sum(exp_by.values()), sum(rel_by.values())
    exposure_share = {g: (v / exp_total if exp_total > 0 else None) for g, v in exp_by.items()}
    relevant_share = {g: (v / rel_total if rel_total > 0 else None) for g, v in rel_by.items()}
    e, r = exposure_share.get(protected), relevant_share.get(protected)
    ratio = e / r if e is not None and r is not None and r > 0 else None
    return {
        "queries_considered": int(considered_q.sum()),
        "exposure_share": exposure_share,
        "relevant_share": relevant_share,
        "relevant_items": {g: int(v) for g, v in rel_by.items()},
        "exposure_ratio": ratio,
    }


# --------------------------------------------------------------------------- #
# The audit
# --------------------------------------------------------------------------- #


def _group_ranking_metrics(
    frame: pd.DataFrame,
    scores: NDArray[np.float64],
    gains: NDArray[np.float64],
    groups: pd.Series,
    config: AuditConfig,
    relevant_threshold: float,
) -> pd.DataFrame:
    """Per-group mean per-query ndcg@k / precision@k through a fairlearn MetricFrame."""
    from fairlearn.metrics import MetricFrame

    from ecrec.metrics.ranking import per_query_metrics  # sklearn: import only when auditing

    k = config.k

    def per_query(y_true: Any, y_pred: Any, query_ids: Any) -> pd.DataFrame:
        return per_query_metrics(
            query_ids=np.asarray(query_ids),
            labels=np.asarray(y_true, dtype=np.float64),
            scores=np.asarray(y_pred, dtype=np.float64),
            relevance=np.asarray(y_true, dtype=np.float64),
            k=k,
            relevant_threshold=relevant_threshold,
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

    qids = frame["query_id"].to_numpy()
    names = {"ndcg": f"ndcg@{k}", "precision": f"precision@{k}", "queries": "queries"}
    mf = MetricFrame(
        metrics={names["ndcg"]: ndcg, names["precision"]: precision, "queries": n_queries},
        y_true=gains,
        y_pred=scores,
        sensitive_features=pd.Series(groups.to_numpy(), name="group"),
        sample_params={name: {"query_ids": qids} for name in names.values()},
    )
    return mf.by_group


def _group_selection_metrics(
    relevant: NDArray[np.bool_],
    selected: NDArray[np.bool_],
    groups: NDArray[Any],
    query_ids: NDArray[Any],
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
        # Rates of groups without positives/negatives are masked to None below.
        warnings.simplefilter("ignore")
        mf = MetricFrame(
            metrics={
                "selection_rate": selection_rate,
                "tpr": true_positive_rate,
                "fpr": false_positive_rate,
                "rows": count,
                "positives": positives,
                "negatives": negatives,
                "queries": n_queries,
            },
            y_true=relevant.astype(int),
            y_pred=selected.astype(int),
            sensitive_features=pd.Series(groups, name="group"),
            sample_params={"queries": {"query_ids": query_ids}},
        )
    table = mf.by_group.copy()
    table.loc[table["positives"] == 0, "tpr"] = np.nan
    table.loc[table["negatives"] == 0, "fpr"] = np.nan
    return table


def _gap(values: Mapping[str, float | None]) -> tuple[float | None, str | None, str | None]:
    """(max - min, argmax, argmin) over defined values; None when fewer than two."""
    defined = {g: v for g, v in values.items() if v is not None}
    if len(defined) < 2:
        return None, None, None
    hi = max(defined, key=lambda g: (defined[g], g))
    lo = min(defined, key=lambda g: (defined[g], g))
    return defined[hi] - defined[lo], hi, lo


def _flag(
    flags: list[dict[str, Any]],
    *,
    metric: str,
    group_column: str | None,
    value: float | None,
    threshold: float,
    above: bool,
    message: str,
) -> None:
    if value is None:
        return
    if (value > threshold) if above else (value < threshold):
        flags.append(
            {
                "metric": metric,
                "group_column": group_column,
                "value": value,
                "threshold": threshold,
                "message": message,
            }
        )


def _audit_column(
    frame: pd.DataFrame,
    column: str,
    *,
    scores: NDArray[np.float64],
    gains: NDArray[np.float64],
    relevant: NDArray[np.bool_],
    config: AuditConfig,
    relevant_threshold: float,
    flags: list[dict[str, Any]],
) -> dict[str, Any]:
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    k = config.k
    q_groups, mixed = query_groups(frame, column)
    ranking = _group_ranking_metrics(frame, scores, gains, q_groups, config, relevant_threshold)
    row_groups = _column(frame, column).to_numpy()
    selected = scores >= config.threshold
    selection = _group_selection_metrics(
        relevant, selected, row_groups, frame["query_id"].to_numpy()
    )

    names = sorted(set(ranking.index.astype(str)) | set(selection.index.astype(str)))
    rows: list[dict[str, Any]] = []
    for name in names:
        r = ranking.loc[name] if name in ranking.index else None
        s = selection.loc[name] if name in selection.index else None
        q_rank = int(r["queries"]) if r is not None else 0
        rows.append(
            {
                "group": name,
                "queries": q_rank,
                "rows": int(s["rows"]) if s is not None else 0,
                f"ndcg@{k}": _num(r[f"ndcg@{k}"]) if r is not None else None,
                f"precision@{k}": _num(r[f"precision@{k}"]) if r is not None else None,
                "selection_rate": _num(s["selection_rate"]) if s is not None else None,
                "tpr": _num(s["tpr"]) if s is not None else None,
                "fpr": _num(s["fpr"]) if s is not None else None,
                "positives": int(s["positives"]) if s is not None else 0,
                "negatives": int(s["negatives"]) if s is not None else 0,
                "compared": q_rank >= config.min_group_queries,
                "compared_rows": s is not None and int(s["queries"]) >= config.min_group_queries,
            }
        )

    compared = [row for row in rows if row["compared"]]
    by_name = {row["group"]: row[f"ndcg@{k}"] for row in compared}
    ndcg_gap, ndcg_hi, ndcg_lo = _gap(by_name)
    precision_gap, _, _ = _gap({row["group"]: row[f"precision@{k}"] for row in compared})

    # Row-level differences via fairlearn, over groups with enough queries.
    row_ok = {row["group"] for row in rows if row["compared_rows"]}
    keep = np.isin(row_groups, list(row_ok))
    dp = eo = None
    if len(row_ok) >= 2:
        dp = _num(
            demographic_parity_difference(
                relevant[keep].astype(int),
                selected[keep].astype(int),
                sensitive_features=pd.Series(row_groups[keep]),
            )
        )
        both = {
            row["group"]
            for row in rows
            if row["group"] in row_ok and row["positives"] > 0 and row["negatives"] > 0
        }
        keep_eo = np.isin(row_groups, list(both))
        if len(both) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                eo = _num(
                    equalized_odds_difference(
                        relevant[keep_eo].astype(int),
                        selected[keep_eo].astype(int),
                        sensitive_features=pd.Series(row_groups[keep_eo]),
                    )
                )

    _flag(
        flags,
        metric=f"ndcg@{k}_gap",
        group_column=column,
        value=ndcg_gap,
        threshold=config.max_ndcg_gap,
        above=True,
        message=(
            f"{column}: ndcg@{k} gap {ndcg_gap:.3f} between {ndcg_hi!r} "
            f"({by_name[ndcg_hi]:.3f}) and {ndcg_lo!r} ({by_name[ndcg_lo]:.3f}) "
            f"exceeds {config.max_ndcg_gap}"
            if ndcg_gap is not None
            else ""
        ),
    )
    _flag(
        flags,
        metric="demographic_parity_difference",
        group_column=column,
        value=dp,
        threshold=config.max_demographic_parity_difference,
        above=True,
        message=(
            f"{column}: selection-rate difference {dp:.3f} at score >= {config.threshold} "
            f"exceeds {config.max_demographic_parity_difference}"
            if dp is not None
            else ""
        ),
    )
    _flag(
        flags,
        metric="equalized_odds_difference",
        group_column=column,
        value=eo,
        threshold=config.max_equalized_odds_difference,
        above=True,
        message=(
            f"{column}: equalized odds difference {eo:.3f} (TPR/FPR gap) at score >= "
            f"{config.threshold} exceeds {config.max_equalized_odds_difference}"
            if eo is not None
            else ""
        ),
    )
    return {
        "by_group": {row["group"]: {k: v for k, v in row.items() if k != "group"} for row in rows},
        "mixed_queries": mixed,
        f"ndcg@{k}_gap": ndcg_gap,
        f"precision@{k}_gap": precision_gap,
        "demographic_parity_difference": dp,
        "equalized_odds_difference": eo,
    }


def audit_rankings(
    frame: pd.DataFrame,
    scores: ArrayLike,
    *,
    config: AuditConfig | None = None,
) -> dict[str, Any]:
    """Audit one scoring of ``frame`` (rows = impressions) and return a JSON-ready dict.

    Keys: ``config``, ``rows``, ``queries``, ``relevant_label``, ``groups``
    (one entry per audited sensitive column present in the frame:
    ``by_group`` = {group: {queries, rows, ndcg@k, precision@k, selection_rate,
    tpr, fpr, positives, negatives, compared, compared_rows}}, then the gaps,
    ``demographic_parity_difference``, ``equalized_odds_difference`` and
    ``mixed_queries``),
    ``missing_columns`` (requested but absent), ``provider`` (None without a
    ``merchant_tier`` column) and ``flags`` (``metric, group_column, value,
    threshold, message``). See the module docstring for every definition.
    """
    config = config or AuditConfig()
    frame = frame.reset_index(drop=True)
    sc, gains, relevant, label_rule = _prepare(frame, scores, config)
    relevant_threshold = config.relevant_threshold if "relevance" in frame.columns else 1
    flags: list[dict[str, Any]] = []
    by_column: dict[str, Any] = {}
    missing = [c for c in config.by if c not in frame.columns]
    for column in config.by:
        if column in frame.columns:
            by_column[column] = _audit_column(
                frame,
                column,
                scores=sc,
                gains=gains,
                relevant=relevant,
                config=config,
                relevant_threshold=relevant_threshold,
                flags=flags,
            )

    provider: dict[str, Any] | None = None
    if PROVIDER_COLUMN in frame.columns:
        mixed = provider_exposure(frame, sc, k=config.k, relevant=relevant, mixed_only=True)
        overall = provider_exposure(frame, sc, k=config.k, relevant=relevant, mixed_only=False)
        n_queries = int(frame["query_id"].nunique())
        provider = {
            "column": PROVIDER_COLUMN,
            "protected": PROTECTED_PROVIDER,
            **mixed,
            "queries_single_tier": n_queries - mixed["queries_considered"],
            "exposure_ratio_all_queries": overall["exposure_ratio"],
            "note": None
            if mixed["queries_considered"]
            else "no query shows both tiers, so the ranking cannot shift exposure between "
            "them; exposure_ratio is undefined",
        }
        ratio = mixed["exposure_ratio"]
        _flag(
            flags,
            metric="exposure_ratio",
            group_column=PROVIDER_COLUMN,
            value=ratio,
            threshold=config.min_exposure_ratio,
            above=False,
            message=(
                f"{PROVIDER_COLUMN}: {PROTECTED_PROVIDER} merchants get "
                f"{(mixed['exposure_share'].get(PROTECTED_PROVIDER) or 0):.1%} of the top-"
                f"{config.k} exposure for "
                f"{(mixed['relevant_share'].get(PROTECTED_PROVIDER) or 0):.1%} of the relevant "
                f"items (ratio {ratio:.2f} < {config.min_exposure_ratio})"
                if ratio is not None
                else ""
            ),
        )

    return {
        "config": config.to_dict(),
        "rows": len(frame),
        "queries": int(frame["query_id"].nunique()),
        "relevant_label": label_rule,
        "groups": by_column,
        "missing_columns": missing,
        "provider": provider,
        "flags": flags,
    }


# --------------------------------------------------------------------------- #
# fairness.json
# --------------------------------------------------------------------------- #


def read_fairness(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``fairness.json``, or None when there is none yet."""
    import json

    path = Path(run_dir) / FAIRNESS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EcrecError(f"{path}: corrupt fairness record: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rounds"), list):
        raise EcrecError(f"{path}: corrupt fairness record: no 'rounds' list")
    return data


def append_fairness(run_dir: str | Path, server_round: int, audit: Mapping[str, Any]) -> Path:
    """Record one round's audit in ``<run>/fairness.json`` (atomically).

    The file is ``{"config": ..., "rounds": [{"round": r, ...audit}, ...],
    "latest": {...}}``: rounds sorted, a re-recorded round replaced, ``latest``
    the highest round and ``config`` its audit config, so the file holds the
    trend over training. A corrupt existing file is an error, not overwritten.
    """
    if isinstance(server_round, bool) or int(server_round) < 0:
        raise EcrecError(f"round must be a non-negative integer, got {server_round!r}")
    path = Path(run_dir) / FAIRNESS_FILE
    existing = read_fairness(run_dir) or {"rounds": []}
    entry = {"round": int(server_round), **{k: v for k, v in audit.items() if k != "round"}}
    rounds = [r for r in existing["rounds"] if r.get("round") != entry["round"]]
    rounds.append(entry)
    rounds.sort(key=lambda r: r.get("round", 0))
    latest = rounds[-1]
    atomic_write_json(path, {"config": latest.get("config"), "rounds": rounds, "latest": latest})
    return path
