"""The report's fairness section (ecrec.report.html): every table scrolls inside the
page, numbers are compact, verdicts and "too few queries" are shown, text is escaped."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ecrec.fairness import append_fairness, audit_rankings, read_fairness
from ecrec.report.html import _fairness_section
from tests.fairness.frames import unbiased_scores


def _tables_are_wrapped(text: str) -> None:
    tables = text.count("<table")
    wrapped = len(
        re.findall(r"<div class='table-scroll' style='overflow-x:auto[^']*'><table", text)
    )
    assert tables and wrapped == tables


def test_fairness_section_shows_intervals_and_verdicts(tmp_path, balanced: pd.DataFrame) -> None:
    frame = balanced.copy()
    few = frame["query_id"].isin(frame["query_id"].unique()[:12])
    frame.loc[few, "user_segment"] = "<b>new</b>"  # 12 queries: too few, and needs escaping
    small = (frame["merchant_tier"] == "small").to_numpy()
    append_fairness(tmp_path, 1, audit_rankings(frame, unbiased_scores(frame)))
    append_fairness(tmp_path, 2, audit_rankings(frame, unbiased_scores(frame) - 10.0 * small))
    text = _fairness_section(read_fairness(tmp_path))
    _tables_are_wrapped(text)
    assert "95% CI" in text and "class='flag'>flag</span>" in text
    assert "&lt;b&gt;new&lt;/b&gt; *" in text and "<b>new</b>" not in text
    assert "Exposure per merchant" in text and "small-0" in text
    assert "Trend" in text
    # Compact numbers: no float printed with more than 3 decimals.
    assert not re.search(r"\d\.\d{4,}", re.sub(r"<[^>]+>", " ", text))


def test_audits_recorded_before_intervals_still_render() -> None:
    old = {
        "latest": {
            "flags": [{"message": "user_segment: ndcg@10 gap 0.140 exceeds 0.1"}],
            "groups": {"user_segment": {"by_group": {"a": {"ndcg@10": 0.81234}}, "gap": 0.14}},
            "provider": {"exposure_ratio": 0.7, "exposure_share": {"small": 0.3}},
        },
        "rounds": [{"round": 1}],
    }
    text = _fairness_section(old)
    _tables_are_wrapped(text)
    assert "0.812" in text and "ndcg@10 gap 0.140" in text


def test_no_audit_says_how_to_make_one() -> None:
    assert "ecrec audit RUN" in _fairness_section(None)


def test_numbers_are_finite_in_the_section(balanced: pd.DataFrame, tmp_path) -> None:
    scores = np.zeros(len(balanced))  # a constant scorer: many undefined numbers
    append_fairness(tmp_path, 0, audit_rankings(balanced, scores))
    text = _fairness_section(read_fairness(tmp_path))
    assert "nan" not in text.lower().replace("nanmean", "")
