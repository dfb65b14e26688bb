"""fairness.json keeps the trend over rounds, atomically, and refuses to overwrite junk."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ecrec.errors import EcrecError
from ecrec.fairness import (
    FAIRNESS_FILE,
    AuditConfig,
    append_fairness,
    audit_rankings,
    read_fairness,
)
from tests.fairness.frames import unbiased_scores


def test_append_fairness_keeps_the_trend_and_replaces_a_round(tmp_path, balanced) -> None:
    fair = audit_rankings(balanced, unbiased_scores(balanced))
    small = (balanced["merchant_tier"] == "small").to_numpy()
    unfair = audit_rankings(balanced, unbiased_scores(balanced) - 10.0 * small)
    append_fairness(tmp_path, 2, unfair)
    append_fairness(tmp_path, 1, fair)
    data = read_fairness(tmp_path)
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    assert data["latest"]["round"] == 2 and data["latest"]["flags"]
    assert data["config"] == AuditConfig().to_dict()
    append_fairness(tmp_path, 2, fair)  # re-recording a round replaces it
    data = json.loads((tmp_path / FAIRNESS_FILE).read_text())
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    assert data["latest"]["flags"] == []
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temp file


def test_the_audit_itself_writes_nothing(tmp_path, balanced: pd.DataFrame, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    audit_rankings(balanced, unbiased_scores(balanced))
    assert list(tmp_path.iterdir()) == []


def test_corrupt_fairness_file_is_an_error_not_overwritten(tmp_path) -> None:
    (tmp_path / FAIRNESS_FILE).write_text("{not json")
    with pytest.raises(EcrecError, match="corrupt fairness record"):
        append_fairness(tmp_path, 1, {"flags": []})
    assert (tmp_path / FAIRNESS_FILE).read_text() == "{not json"
