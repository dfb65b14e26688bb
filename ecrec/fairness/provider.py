"""Provider-side fairness: is each merchant tier (and merchant) exposed as its products merit?

Per group of ``merchant_tier`` and of ``merchant_id``: exposure ratio (see
:mod:`ecrec.fairness.exposure`) with a bootstrap interval over the queries
that show more than one group, and a verdict against ``min_exposure_ratio``
(flagged when the whole interval is below it). A group needs
``min_queries_per_group`` such queries to be judged. ``exposure_ratio`` at the
top of the section is the protected tier's (small merchants).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ecrec.fairness.config import (
    MERCHANT_COLUMN,
    PROTECTED_PROVIDER,
    PROVIDER_COLUMN,
    AuditConfig,
)
from ecrec.fairness.exposure import GroupExposure, group_exposure
from ecrec.fairness.inputs import ScoredFrame, group_values
from ecrec.fairness.uncertainty import (
    Comparison,
    Status,
    bootstrap_interval,
    fmt_interval,
    judged,
    not_measured,
)

_VERDICT = {"flag": "below", "ok": "not below", "inconclusive": "inconclusive against"}


def _sum_ratio(exposure: NDArray[np.float64], target: NDArray[np.float64], axis: int = -1) -> Any:
    return np.sum(exposure, axis=axis) / np.sum(target, axis=axis)


def _exposure_table(
    scored: ScoredFrame,
    column: str,
    config: AuditConfig,
    *,
    mixed: bool = True,
    include: tuple[str, ...] = (),
) -> GroupExposure:
    return group_exposure(
        scored.query_codes,
        group_values(scored.frame, column).to_numpy(),
        scored.scores,
        scored.gains,
        scored.relevant,
        column=column,
        k=config.k,
        attention=config.attention,
        patience=config.rbp_patience,
        mixed_only=mixed,
        include=include,
    )


def _judge_group(table: GroupExposure, index: int, config: AuditConfig) -> Comparison:
    name, column = table.names[index], table.column
    queries = int(table.queries_with_group[index])
    threshold = config.min_exposure_ratio
    exposure, target = table.exposure[index], table.target[index]
    common: dict[str, Any] = {
        "metric": "exposure_ratio",
        "column": column,
        "threshold": threshold,
        "flag_when": "below",
    }
    if queries < config.min_queries_per_group:
        return not_measured(
            **common,
            status="too few queries",
            groups=[],
            too_few={name: queries},
            message=f"{column}: too few queries to judge {name!r}'s exposure "
            f"({queries} showing it beside another group; needs {config.min_queries_per_group})",
        )
    if target.sum() <= 0:
        return not_measured(
            **common,
            status="undefined",
            groups=[name],
            too_few={},
            message=f"{column}: {name!r} merits no exposure in the top {config.k} "
            "(no relevant products there); its exposure ratio is undefined",
        )
    value = float(exposure.sum() / target.sum())
    shown = np.flatnonzero(exposure + target > 0)
    interval = bootstrap_interval(
        _sum_ratio, [exposure[shown], target[shown]], paired=True, config=config
    )
    exposure_share = exposure.sum() / table.exposure.sum()
    target_share = target.sum() / table.target.sum()

    def describe(status: Status) -> str:
        return (
            f"{column}: {name!r} gets {exposure_share:.1%} of the top-{config.k} exposure for "
            f"{target_share:.1%} of the merited exposure (ratio {value:.2f}, "
            f"{config.confidence_level:.0%} {fmt_interval(interval, 2)}) "
            f"{_VERDICT[status]} {threshold}"
        )

    return judged(
        **common,
        value=value,
        interval=interval,
        groups=[name],
        too_few={},
        describe=describe,
    )


def _by_group(
    table: GroupExposure, config: AuditConfig
) -> tuple[dict[str, dict[str, Any]], list[Comparison]]:
    exposure = table.shares(table.exposure)
    target = table.shares(table.target)
    relevant = table.shares(table.relevant)
    rows: dict[str, dict[str, Any]] = {}
    judged_groups = []
    for index, name in enumerate(table.names):
        verdict = _judge_group(table, index, config)
        judged_groups.append(verdict)
        rows[name] = {
            "queries": int(table.queries_with_group[index]),
            "exposure_share": exposure[name],
            "target_share": target[name],
            "relevant_share": relevant[name],
            "relevant_items": int(table.relevant[index].sum()),
            "exposure_ratio": verdict.value,
            "ci": list(verdict.interval) if verdict.interval is not None else None,
            "status": verdict.status,
        }
    return rows, judged_groups


def provider_section(
    scored: ScoredFrame, config: AuditConfig
) -> tuple[dict[str, Any] | None, list[Comparison]]:
    """The provider section of an audit and its judged groups (None without tiers)."""
    if PROVIDER_COLUMN not in scored.frame.columns:
        return None, []
    tiers = _exposure_table(scored, PROVIDER_COLUMN, config, include=(PROTECTED_PROVIDER,))
    overall = _exposure_table(
        scored, PROVIDER_COLUMN, config, mixed=False, include=(PROTECTED_PROVIDER,)
    )
    tier_rows, verdicts = _by_group(tiers, config)
    protected = (
        verdicts[tiers.names.index(PROTECTED_PROVIDER)]
        if PROTECTED_PROVIDER in tiers.names
        else None
    )
    merchants: dict[str, Any] | None = None
    if MERCHANT_COLUMN in scored.frame.columns:
        table = _exposure_table(scored, MERCHANT_COLUMN, config)
        merchant_rows, merchant_verdicts = _by_group(table, config)
        verdicts += merchant_verdicts
        merchants = {
            "column": MERCHANT_COLUMN,
            "queries_considered": table.queries_considered,
            "by_group": merchant_rows,
        }
    section = {
        "column": PROVIDER_COLUMN,
        "protected": PROTECTED_PROVIDER,
        "attention": config.attention,
        "rbp_patience": config.rbp_patience if config.attention == "rbp" else None,
        "k": config.k,
        "queries_considered": tiers.queries_considered,
        "queries_single_tier": scored.n_queries - tiers.queries_considered,
        "by_group": tier_rows,
        "exposure_ratio": protected.value if protected is not None else None,
        "comparison": (
            protected.to_dict(config.confidence_level) if protected is not None else None
        ),
        "exposure_ratio_all_queries": overall.ratios().get(PROTECTED_PROVIDER),
        "merchants": merchants,
        "note": None
        if tiers.queries_considered
        else "no query shows both tiers, so the ranking cannot shift exposure between them; "
        "exposure_ratio is undefined",
    }
    return section, verdicts
