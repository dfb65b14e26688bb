"""``ecrec report RUN``: one self-contained ``report.html`` for a run folder.

Everything is inline (PNG figures as data URIs, SHAP's text plots as their own
HTML), so the file opens offline and can be mailed around. Sections whose
inputs are missing (no audit or explanations yet) say so instead of failing.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from ecrec.errors import EcrecError
from ecrec.report import plots
from ecrec.report.privacy_report import REPORT_JSON, write_privacy_report
from ecrec.runfolder import RunFolder, atomic_write_bytes

REPORT_FILE = "report.html"

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #1d2330; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 2px solid #e3e7ef; padding-bottom: .2rem;
     margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #d9dee8; padding: .25rem .55rem; text-align: right; }
th { background: #f3f5f9; } td:first-child, th:first-child { text-align: left; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .8rem; }
img { max-width: 100%; } .muted { color: #6b7385; } .flag { color: #b00020; font-weight: 600; }
.ok { color: #1b7f3b; font-weight: 600; } .cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #d9dee8; border-radius: 6px; padding: .6rem 1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.4rem; } .shap { border: 1px solid #e3e7ef;
       padding: .5rem; margin: .5rem 0; overflow-x: auto; }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list):
        return html.escape(", ".join(str(v) for v in value)) or "–"
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _read_json(path: Path) -> Any | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise EcrecError(f"{path}: invalid JSON: {err.msg} (line {err.lineno})") from None


def _summary(records: list[dict[str, Any]], k: int, privacy: dict[str, Any]) -> str:
    first, last = records[0], records[-1]
    key = f"ndcg@{k}"
    spent = [m["epsilon_spent"] for m in privacy["merchants"].values() if "epsilon_spent" in m]
    cards = [
        ("rounds", str(last["round"])),
        ("merchants", str(len(privacy["merchants"]))),
        (
            f"NDCG@{k} round 0 → {last['round']}",
            f"{_fmt(first.get(key), 3)} → {_fmt(last.get(key), 3)}",
        ),
        (
            "highest ε spent",
            "not private"
            if not privacy.get("private", True)
            else (f"{max(spent):.2f} ({privacy.get('accountant')})" if spent else "not disclosed"),
        ),
        ("wall time (s)", f"{sum(r.get('wall_seconds', 0) for r in records):.0f}"),
    ]
    notice = privacy.get("notice")
    banner = f"<p class='flag'><b>{html.escape(notice)}</b></p>" if notice else ""
    return (
        banner
        + '<div class="cards">'
        + "".join(
            f'<div class="card"><span class="muted">{html.escape(n)}</span>'
            f"<b>{html.escape(v)}</b></div>"
            for n, v in cards
        )
        + "</div>"
    )


def _metrics_section(records: list[dict[str, Any]], k: int) -> str:
    names = [f"ndcg@{k}", f"mrr@{k}", "map", f"recall@{k}", f"precision@{k}", "auc"]
    rows = [
        [
            r["round"],
            *[r.get(n) for n in names],
            r.get("logloss"),
            r.get("bytes_up"),
            r.get("wall_seconds"),
        ]
        for r in records
    ]
    return (
        "<h2 id='metrics'>Ranking quality per round</h2>"
        "<p class='muted'>The global ranker on the server's pooled validation shard; "
        "round 0 is before any training.</p>"
        + _img(plots.metric_curves(records, metrics=[*names[:3], "auc"]), "metric curves")
        + _table(["round", *names, "logloss", "bytes up", "wall s"], rows)
        + "<h2 id='merchants'>Per-merchant NDCG</h2>"
        "<p class='muted'>The same global model on each merchant's own validation queries.</p>"
        + _img(plots.per_merchant_curves(records, key=f"per_merchant_ndcg@{k}"), "per merchant")
    )


def _privacy_section(report: dict[str, Any]) -> str:
    rows = []
    for merchant, info in report["merchants"].items():
        declined = ", ".join(
            f"{rnd}: {reason}" for rnd, reason in info.get("decline_reasons", {}).items()
        )
        if "epsilon_spent" not in info:
            rows.append(
                [merchant, "-", "-", "-", "not disclosed", "-", "-", "-", declined or "-", "-"]
            )
            continue
        rows.append(
            [
                merchant,
                f"per {info['unit']}",
                f"{info['accountant']}, δ={info['delta']:g}",
                info["budget_epsilon"],
                info["epsilon_spent"],
                f"{info['epsilon_spent_other']:.4f} ({info['other_accountant']})",
                info["remaining_epsilon"],
                info["projected_rounds_to_exhaustion"],
                declined or "-",
                info["consistent_with_ledger"],
            ]
        )
    with_ledgers = {m: i for m, i in report["merchants"].items() if "rounds" in i}
    notice = report.get("notice")
    return (
        "<h2 id='privacy'>Privacy budget per merchant</h2>"
        + (f"<p class='flag'><b>{html.escape(notice)}</b></p>" if notice else "")
        + "<p class='muted'>(ε, δ)-DP per merchant from each merchant's own ledger, under its "
        "accountant (cross-check alongside), per DP unit (one shopper, or one impression row). "
        "The server itself only sees what each node's policy discloses.</p>"
        + (
            _img(
                plots.privacy_curves(with_ledgers, accountant=str(report.get("accountant"))),
                "privacy curves",
            )
            if with_ledgers
            else ""
        )
        + _table(
            [
                "merchant",
                "unit",
                "accountant",
                "budget ε",
                "spent ε",
                "cross-check ε",
                "remaining",
                "rounds left at this rate",
                "declined rounds",
                "ledger agrees",
            ],
            rows,
        )
    )


_WIDE = "overflow-x:auto;max-width:100%;margin:.4rem 0"
_COMPACT = "font-size:.82rem;white-space:nowrap"


def _num(value: Any, *, percent: bool = False) -> str:
    """A compact cell: 3 decimals (or a percentage), big numbers whole, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if percent:
            return f"{value:.1%}"
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3f}"
    return html.escape(str(value))


def _ci(interval: Any) -> str:
    if not isinstance(interval, list | tuple) or len(interval) != 2:
        return "–"
    return f"{_num(interval[0])}–{_num(interval[1])}"


def _wide_table(headers: list[str], rows: list[list[str]]) -> str:
    """A table of pre-formatted cells that scrolls sideways inside its section if too wide."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<div class='table-scroll' style='{_WIDE}'><table style='{_COMPACT}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _verdict(status: Any) -> str:
    text = html.escape(str(status)) if status else "–"
    return f"<span class='flag'>{text}</span>" if status == "flag" else text


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


def _explanations_section(run_dir: Path) -> str:
    data = _read_json(run_dir / "explanations.json")
    if not data:
        return (
            "<h2 id='explanations'>Explanations</h2><p class='muted'>No explanations in this run "
            "folder (run <code>ecrec explain RUN</code>).</p>"
        )
    parts = ["<h2 id='explanations'>Explanations (SHAP)</h2>"]
    faith = data.get("faithfulness")
    if isinstance(faith, dict) and faith.get("pairs"):
        parts.append(
            f"<p>Faithfulness on the synthetic relevance rule: the query's category/colour word "
            f"is among the top attributed tokens in {faith.get('hits')} of {faith.get('pairs')} "
            f"explained pairs ({_fmt(faith.get('rate'), 2)}).</p>"
        )
    folder = run_dir / "explanations"
    for name, title in (("global_tokens.png", "tokens"), ("global_fields.png", "fields")):
        if (folder / name).exists():
            parts.append(f"<h3>Most influential {title}</h3>")
            parts.append(_img((folder / name).read_bytes(), f"global {title}"))
    snippets = sorted(folder.glob("pair_*.html"))[:6] if folder.exists() else []
    if snippets:
        parts.append("<h3>Examples</h3>")
        for snippet in snippets:
            parts.append(
                f"<div class='shap'><p class='muted'>{html.escape(snippet.stem)}</p>"
                f"{snippet.read_text('utf-8')}</div>"
            )
    return "".join(parts)


def build_report(run_dir: Path) -> str:
    run = RunFolder(run_dir)
    records = run.read_metrics()
    if not records:
        raise EcrecError(f"{run.metrics_path}: no rounds recorded (is {run_dir} a run folder?)")
    privacy = _read_json(run_dir / REPORT_JSON)
    if privacy is None:
        privacy, _ = write_privacy_report(run_dir)
    config_text = run.config_path.read_text("utf-8") if run.config_path.exists() else ""
    k = 10
    for key in records[0]:
        if key.startswith("ndcg@"):
            k = int(key.split("@")[1])
    body = [
        f"<h1>ecrec run report</h1><p class='muted'>{html.escape(str(run_dir))} · "
        f"generated {time.strftime('%Y-%m-%d %H:%M:%S')}</p>",
        _summary(records, k, privacy),
        _metrics_section(records, k),
        _privacy_section(privacy),
        _fairness_section(_read_json(run_dir / "fairness.json")),
        _explanations_section(run_dir),
        f"<h2 id='config'>Resolved configuration</h2><pre>{html.escape(config_text)}</pre>",
    ]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>ecrec report: {html.escape(run_dir.name)}</title><style>{STYLE}</style>"
        "</head><body>" + "".join(body) + "</body></html>"
    )


def write_report(run_dir: Path) -> Path:
    path = run_dir / REPORT_FILE
    atomic_write_bytes(path, build_report(run_dir).encode("utf-8"))
    return path
