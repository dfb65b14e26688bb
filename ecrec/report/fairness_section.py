"""The report's fairness section: group metrics with intervals, comparisons and their
verdicts, and provider exposure per merchant tier."""

from __future__ import annotations

import html
from typing import Any

from ecrec.report.markup import _ci, _num, _verdict, _wide_table


def _fairness_comparisons(latest: dict[str, Any]) -> str:
    rows = []
    for column, result in (latest.get("groups") or {}).items():
        for metric, c in (result.get("comparisons") or {}).items():
            rows.append(
                [
                    html.escape(column),
                    html.escape(metric),
                    _num(c.get("value")),
                    _ci(c.get("ci")),
                    _num(c.get("threshold")),
                    _verdict(c.get("status")),
                ]
            )
    provider = latest.get("provider")
    comparison = provider.get("comparison") if isinstance(provider, dict) else None
    if isinstance(comparison, dict):
        rows.append(
            [
                html.escape(f"{provider.get('column')} ({provider.get('protected')})"),
                "exposure_ratio (min)",
                _num(comparison.get("value")),
                _ci(comparison.get("ci")),
                _num(comparison.get("threshold")),
                _verdict(comparison.get("status")),
            ]
        )
    if not rows:
        return ""
    level = latest.get("config", {}).get("confidence_level", 0.95)
    return "<h3>Comparisons</h3>" + _wide_table(
        ["column", "comparison", "value", f"{level:.0%} CI", "threshold", "verdict"], rows
    )


def _fairness_groups(column: str, result: dict[str, Any], k: int) -> str:
    by_group = result.get("by_group", {})
    if "comparisons" not in result:  # an audit recorded before intervals existed
        metrics = sorted({m for values in by_group.values() for m in values})
        rows = [[html.escape(g), *[_num(v.get(m)) for m in metrics]] for g, v in by_group.items()]
        return f"<h3>By {html.escape(column)}</h3>" + _wide_table([column, *metrics], rows)
    names = ["queries", f"ndcg@{k}", f"precision@{k}", "selection_rate", "tpr", "fpr", "rows"]
    rows = [
        [
            html.escape(g) + ("" if values.get("enough_queries", True) else " *"),
            *[_num(values.get(name)) for name in names],
        ]
        for g, values in by_group.items()
    ]
    mixed = result.get("mixed_queries")
    note = (
        f" {mixed} queries mix several values (grouped by their most common one)." if mixed else ""
    )
    if not all(values.get("enough_queries", True) for values in by_group.values()):
        note = " * too few queries to be compared." + note
    headers = [column, "queries", f"ndcg@{k}", f"precision@{k}", "sel. rate", "TPR", "FPR", "rows"]
    return (
        f"<h3>By {html.escape(column)}</h3>"
        + _wide_table(headers, rows)
        + (f"<p class='muted'>{html.escape(note.strip())}</p>" if note else "")
    )


def _exposure_rows(by_group: dict[str, Any]) -> list[list[str]]:
    def lowest_first(item: tuple[str, Any]) -> tuple[bool, float, str]:
        ratio = item[1].get("exposure_ratio")
        return ratio is None, ratio or 0.0, item[0]

    ordered = sorted(by_group.items(), key=lowest_first)
    return [
        [
            html.escape(g),
            _num(v.get("queries")),
            _num(v.get("exposure_share"), percent=True),
            _num(v.get("target_share"), percent=True),
            _num(v.get("relevant_share"), percent=True),
            _num(v.get("exposure_ratio")),
            _ci(v.get("ci")),
            _verdict(v.get("status")),
        ]
        for g, v in ordered
    ]


def _fairness_provider(provider: dict[str, Any]) -> str:
    parts = ["<h3>Provider exposure</h3>"]
    if "by_group" not in provider:  # an audit recorded before intervals existed
        scalars = {k: v for k, v in provider.items() if not isinstance(v, dict | list)}
        rows = [[html.escape(str(k)), _num(v)] for k, v in scalars.items()]
        return "".join(parts) + _wide_table(["metric", "value"], rows)
    model = (
        f"attention patience^(rank-1), patience {provider.get('rbp_patience')}"
        if provider.get("attention") == "rbp"
        else "attention 1/log2(1+rank)"
    )
    parts.append(
        f"<p class='muted'>Top-{_num(provider.get('k'))} exposure ({model}) against the exposure "
        "each product's relevance merits (equal expected exposure for equal relevance); ratio "
        f"1 = exposed as merited. {_num(provider.get('queries_considered'))} queries show both "
        f"tiers; {_num(provider.get('queries_single_tier'))} show one.</p>"
    )
    if provider.get("note"):
        parts.append(f"<p class='muted'>{html.escape(str(provider['note']))}</p>")
    headers = ["group", "queries", "exposure", "target", "relevant", "ratio", "CI", "verdict"]
    if provider["by_group"]:
        column = str(provider.get("column"))
        parts.append(_wide_table([column, *headers[1:]], _exposure_rows(provider["by_group"])))
    merchants = provider.get("merchants")
    if isinstance(merchants, dict) and merchants.get("by_group"):
        parts.append("<h3>Exposure per merchant (lowest ratio first)</h3>")
        column = str(merchants.get("column"))
        parts.append(_wide_table([column, *headers[1:]], _exposure_rows(merchants["by_group"])))
    return "".join(parts)


def _fairness_section(fairness: dict[str, Any] | None) -> str:
    if not fairness:
        return (
            "<h2 id='fairness'>Fairness audit</h2><p class='muted'>No audit in this run folder "
            "(run <code>ecrec audit RUN</code>).</p>"
        )
    latest = fairness.get("latest") or (fairness.get("rounds") or [{}])[-1]
    config = latest.get("config") or {}
    k = config.get("k", 10)
    parts = ["<h2 id='fairness'>Fairness audit</h2>"]
    if "min_queries_per_group" in config:
        parts.append(
            f"<p class='muted'>Round {_num(latest.get('round'))}: {_num(latest.get('queries'))} "
            f"queries; relevant = {html.escape(str(latest.get('relevant_label')))}. Intervals are "
            f"{config.get('confidence_level', 0.95):.0%} bootstrap intervals over queries; a "
            "comparison is flagged only when its whole interval is beyond the threshold, and "
            f"groups with fewer than {_num(config['min_queries_per_group'])} queries are not "
            "compared.</p>"
        )
    flags = latest.get("flags", [])
    if flags:
        parts.append(
            "<p class='flag'>Flagged:</p><ul>"
            + "".join(
                f"<li class='flag'>{html.escape(str(f.get('message', f)))}</li>" for f in flags
            )
            + "</ul>"
        )
    else:
        parts.append("<p class='ok'>No comparison beyond its threshold in the latest round.</p>")
    parts.append(_fairness_comparisons(latest))
    for column, result in (latest.get("groups") or {}).items():
        parts.append(_fairness_groups(column, result, k))
    provider = latest.get("provider")
    if isinstance(provider, dict):
        parts.append(_fairness_provider(provider))
    trend = fairness.get("rounds", [])
    if len(trend) > 1:
        rows = [
            [
                _num(r.get("round")),
                _num(len(r.get("flags", []))),
                _num((r.get("status_counts") or {}).get("inconclusive")),
                _num((r.get("status_counts") or {}).get("too few queries")),
            ]
            for r in trend
        ]
        parts.append("<h3>Trend</h3>")
        parts.append(_wide_table(["round", "flags", "inconclusive", "too few queries"], rows))
    return "".join(parts)
