"""report.html is self-contained and renders every section without errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ecrec.report.html import build_report, write_report
from tests.report.conftest import render
from tests.report.test_privacy_report import _run_folder

SECTIONS = [
    "Ranking quality per round",
    "Per-merchant NDCG",
    "Privacy budget per merchant",
    "Fairness audit",
    "Explanations",
    "Resolved configuration",
]


def _with_metrics(run: Path) -> Path:
    records = []
    for server_round in range(4):
        records.append(
            {
                "round": server_round,
                "ndcg@10": 0.6 + 0.05 * server_round,
                "mrr@10": 0.5 + 0.05 * server_round,
                "map": 0.5,
                "recall@10": 1.0,
                "precision@10": 0.4,
                "auc": None if server_round == 0 else 0.6,
                "logloss": 0.69,
                "per_merchant_ndcg@10": {"m00": 0.6, "m01": 0.7},
                "epsilon": {"m00": float(server_round)},
                "declined": [],
                "bytes_up": 1000 * server_round,
                "wall_seconds": 3.0,
            }
        )
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (run / "config.toml").write_text('[model]\nbase-model = "tiny"\n<script>alert(1)</script>\n')
    return run


def test_report_is_self_contained_and_escapes_text(tmp_path: Path) -> None:
    run = _with_metrics(_run_folder(tmp_path, budgets={"m00": 50.0, "m01": 50.0}))
    text = build_report(run)
    for section in SECTIONS:
        assert section in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "external resource"
    assert "<script>alert(1)</script>" not in text, "config text must be escaped"
    assert text.count("data:image/png;base64,") >= 3


def test_missing_metrics_is_one_clear_error(tmp_path: Path) -> None:
    from ecrec.errors import EcrecError

    with pytest.raises(EcrecError, match="no rounds recorded"):
        build_report(tmp_path)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run = _with_metrics(_run_folder(tmp_path, budgets={"m00": 50.0, "m01": 50.0}))
    path = write_report(run)
    page = render(path, screenshot=tmp_path / "report.png")
    assert page["errors"] == []
    assert [m for m in page["console"] if m[0] in ("error", "warning")] == []
    assert page["headings"] == SECTIONS
    assert page["images"] and all(width > 0 for width, _ in page["images"]), page["images"]
    assert all(url.startswith(("file:", "data:")) for url in page["requests"]), page["requests"]
