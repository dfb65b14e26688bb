"""``ecrec report RUN``: one self-contained ``report.html`` for a run folder.

Everything is inline (PNG figures as data URIs, SHAP's text plots as their own
HTML), so the file opens offline and can be mailed around. Sections whose
inputs are missing (no audit or explanations yet) say so instead of failing.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from ecrec.errors import EcrecError
from ecrec.report import plots
from ecrec.report.fairness_section import _fairness_section
from ecrec.report.markup import _fmt, _img, _read_json, _table
from ecrec.report.privacy_audit import html_section as privacy_audit_section
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
        privacy_audit_section(run_dir),
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
