"""The node journal: an append-only local log that survives a torn last line."""

from __future__ import annotations

import math
import stat
from pathlib import Path

import numpy as np

from ecrec.node import NodeJournal


def test_records_come_back_in_order_as_plain_json(tmp_path: Path) -> None:
    journal = NodeJournal(tmp_path / "journals" / "m00.jsonl")
    assert journal.records() == []
    journal.append("declined", round=1, settings=["train.seed"], reason="no")
    journal.append(
        "trained",
        round=np.int64(2),
        loss=np.float32(0.5),
        nan=math.nan,
        where=tmp_path,
        nested={"steps": (np.int32(3), 4)},
    )
    first, second = journal.records()
    assert first["event"] == "declined" and first["settings"] == ["train.seed"]
    assert second["event"] == "trained" and second["round"] == 2 and second["loss"] == 0.5
    assert second["nan"] is None and second["where"] == str(tmp_path)
    assert second["nested"] == {"steps": [3, 4]}
    assert first["at"] <= second["at"]


def test_journal_is_private_to_the_merchant(tmp_path: Path) -> None:
    journal = NodeJournal(tmp_path / "m00.jsonl")
    journal.append("trained", round=1)
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    journal = NodeJournal(tmp_path / "m00.jsonl")
    journal.append("trained", round=1)
    with journal.path.open("a", encoding="utf-8") as handle:
        handle.write('{"event": "trained", "rou')  # a crash mid-append
    assert [r["round"] for r in journal.records()] == [1]


def test_the_first_record_after_a_torn_line_survives(tmp_path: Path) -> None:
    journal = NodeJournal(tmp_path / "m00.jsonl")
    journal.append("trained", round=1)
    with journal.path.open("a", encoding="utf-8") as handle:
        handle.write('{"event": "trained", "rou')
    journal.append("declined", round=2)
    assert [(r["event"], r["round"]) for r in journal.records()] == [
        ("trained", 1),
        ("declined", 2),
    ]
