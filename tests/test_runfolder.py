"""The run folder: metrics.jsonl, checkpoints, server state, atomic writes."""

from __future__ import annotations

import errno
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from ecrec.errors import EcrecError
from ecrec.runfolder import RunFolder


def _state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight": rng.normal(
            size=(8, 64)
        ).astype(np.float32),
        "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight": rng.normal(
            size=(64, 8)
        ).astype(np.float32),
        "base_model.model.classifier.bias": np.array([seed + 0.5], dtype=np.float32),
    }


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


@pytest.fixture
def run(tmp_path: Path) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    folder.create()
    return folder


def test_empty_run_folder_reads_as_empty(run: RunFolder) -> None:
    assert run.read_metrics() == []
    assert run.read_server_state() is None
    assert run.latest() is None
    with pytest.raises(EcrecError, match=re.escape("round_0001.npz")):
        run.load_checkpoint(1)


def test_append_metrics_keeps_round_order_and_replaces_same_round(run: RunFolder) -> None:
    run.append_metrics({"round": 0, "ndcg@10": 0.50})
    run.append_metrics({"round": 2, "ndcg@10": 0.60})
    run.append_metrics({"round": 1, "ndcg@10": 0.55})
    assert [r["round"] for r in run.read_metrics()] == [0, 1, 2]
    # A resumed run re-evaluates round 1: the old record is replaced, not duplicated.
    run.append_metrics({"round": 1, "ndcg@10": 0.58, "bytes_up": 10})
    records = run.read_metrics()
    assert [r["round"] for r in records] == [0, 1, 2]
    assert records[1] == {"round": 1, "ndcg@10": 0.58, "bytes_up": 10}
    assert records[0]["ndcg@10"] == 0.50 and records[2]["ndcg@10"] == 0.60
    # The file is exactly one JSON object per line.
    assert _lines(run.metrics_path) == records
    assert len(run.metrics_path.read_text("utf-8").splitlines()) == 3


def test_non_finite_metrics_are_written_as_null(run: RunFolder) -> None:
    run.append_metrics(
        {
            "round": 1,
            "auc": math.nan,
            "logloss": np.float32("inf"),
            "ndcg@10": np.float64(0.75),
            "queries": np.int64(10),
            "per_merchant_ndcg@10": {"m00": 0.7, "m01": -math.inf},
            "losses": [0.5, math.nan],
        }
    )
    text = run.metrics_path.read_text("utf-8")
    assert "NaN" not in text and "Infinity" not in text
    record = json.loads(text.splitlines()[0], parse_constant=lambda c: pytest.fail(c))
    assert record["auc"] is None and record["logloss"] is None
    assert record["ndcg@10"] == 0.75 and record["queries"] == 10
    assert record["per_merchant_ndcg@10"] == {"m00": 0.7, "m01": None}
    assert record["losses"] == [0.5, None]
    assert run.read_metrics() == [record]


def test_corrupt_metrics_line_names_file_and_line(run: RunFolder) -> None:
    run.append_metrics({"round": 0, "ndcg@10": 0.5})
    run.append_metrics({"round": 1, "ndcg@10": 0.6})
    with run.metrics_path.open("a", encoding="utf-8") as handle:
        handle.write('{"round": 2, "ndcg@10": \n')
    with pytest.raises(EcrecError) as info:
        run.read_metrics()
    assert f"{run.metrics_path}:3" in str(info.value)
    assert "\n" not in str(info.value)
    # Appending to a corrupt file refuses rather than silently dropping the bad line.
    before = run.metrics_path.read_bytes()
    with pytest.raises(EcrecError):
        run.append_metrics({"round": 3})
    assert run.metrics_path.read_bytes() == before


def test_checkpoints_round_trip_exactly(run: RunFolder) -> None:
    state = _state(1)
    float64_state = {n: a.astype(np.float64) for n, a in _state(2).items()}
    path = run.save_checkpoint(1, state, {"clients": {"m00": {"examples": 100}}})
    assert path == run.checkpoint_path(1) and path.name == "round_0001.npz"
    run.save_checkpoint(2, float64_state, {"clients": {}})
    for server_round, expected in ((1, state), (2, _state(2))):
        loaded = run.load_checkpoint(server_round)
        assert sorted(loaded) == sorted(expected)
        for name, array in loaded.items():
            assert array.dtype == np.float32, name
            assert array.shape == expected[name].shape, name
            np.testing.assert_array_equal(array, expected[name], err_msg=name)


def test_latest_returns_last_round_and_server_state(run: RunFolder) -> None:
    run.save_checkpoint(1, _state(1), {"clients": {"m00": {"epsilon": 1.0}}})
    run.save_checkpoint(2, _state(2), {"clients": {"m00": {"epsilon": 2.0}}, "extra": [1, 2]})
    latest = run.latest()
    assert latest is not None
    server_round, state, server_state = latest
    assert server_round == 2
    np.testing.assert_array_equal(
        state["base_model.model.classifier.bias"], np.array([2.5], np.float32)
    )
    assert server_state == {"clients": {"m00": {"epsilon": 2.0}}, "extra": [1, 2], "round": 2}
    assert run.read_server_state() == server_state


def _fail_replace(monkeypatch: pytest.MonkeyPatch, *, fail_on: int) -> list[str]:
    """Make the ``fail_on``-th os.replace call (1-based) raise, as a crash would."""
    real = os.replace
    calls: list[str] = []

    def replace(src, dst, *args, **kwargs):
        calls.append(str(dst))
        if len(calls) == fail_on:
            raise OSError("simulated crash during save")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return calls


@pytest.mark.parametrize("fail_on", [1, 2], ids=["adapter-file", "server-state"])
def test_crash_during_save_keeps_previous_checkpoint(
    run: RunFolder, monkeypatch: pytest.MonkeyPatch, fail_on: int
) -> None:
    run.save_checkpoint(1, _state(1), {"clients": {"m00": {"epsilon": 1.0}}})
    old_adapter = run.checkpoint_path(1).read_bytes()
    old_server_state = run.read_server_state()

    calls = _fail_replace(monkeypatch, fail_on=fail_on)
    with pytest.raises(OSError, match="simulated crash"):
        run.save_checkpoint(2, _state(2), {"clients": {"m00": {"epsilon": 2.0}}})
    assert len(calls) == fail_on
    monkeypatch.undo()

    assert run.checkpoint_path(1).read_bytes() == old_adapter
    assert run.read_server_state() == old_server_state
    latest = run.latest()
    assert latest is not None
    server_round, state, server_state = latest
    assert server_round == 1
    assert server_state == old_server_state
    np.testing.assert_array_equal(
        state["base_model.model.classifier.bias"], np.array([1.5], np.float32)
    )
    # A later save still works.
    run.save_checkpoint(2, _state(2), {"clients": {}})
    assert run.latest()[0] == 2


def test_crash_while_overwriting_a_round_keeps_its_old_contents(
    run: RunFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    run.save_checkpoint(1, _state(1), {"clients": {}})
    before = run.load_checkpoint(1)
    _fail_replace(monkeypatch, fail_on=1)
    with pytest.raises(OSError):
        run.save_checkpoint(1, _state(9), {"clients": {}})
    monkeypatch.undo()
    after = run.load_checkpoint(1)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_crash_during_metrics_write_keeps_previous_file(
    run: RunFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    run.append_metrics({"round": 0, "ndcg@10": 0.5})
    before = run.metrics_path.read_bytes()
    _fail_replace(monkeypatch, fail_on=1)
    with pytest.raises(OSError):
        run.append_metrics({"round": 1, "ndcg@10": 0.6})
    monkeypatch.undo()
    assert run.metrics_path.read_bytes() == before
    # The temporary file of the failed write is cleaned up.
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoints", "metrics.jsonl"]


def test_corrupt_server_state_is_an_ecrec_error(run: RunFolder) -> None:
    run.save_checkpoint(1, _state(1), {"clients": {}})
    (run.checkpoints / "server_state.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(EcrecError, match=re.escape("server_state.json")):
        run.latest()


def test_config_and_privacy_files_are_written(run: RunFolder) -> None:
    run.write_config("[train]\nbatch-size = 8\n")
    assert run.config_path.read_text("utf-8") == "[train]\nbatch-size = 8\n"
    run.write_privacy({"m00": {"spent": 1.5, "remaining": math.nan}})
    assert json.loads(run.privacy_path.read_text("utf-8")) == {
        "m00": {"spent": 1.5, "remaining": None}
    }


def test_crash_during_checkpoint_save_leaves_no_temp_file(
    run: RunFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_replace(monkeypatch, fail_on=1)
    with pytest.raises(OSError):
        run.save_checkpoint(1, _state(1), {"clients": {}})
    monkeypatch.undo()
    assert sorted(p.name for p in run.checkpoints.iterdir()) == []


# -- a full or read-only disk (issue 10, row 3) ------------------------------------------

DISK_FAULTS = [
    pytest.param(errno.ENOSPC, "flush", id="ENOSPC-at-fsync"),
    pytest.param(errno.ENOSPC, "rename", id="ENOSPC-at-rename"),
    pytest.param(errno.EROFS, "create", id="EROFS-at-create"),
]


@pytest.mark.parametrize(("code", "at"), DISK_FAULTS)
def test_a_full_or_read_only_disk_keeps_the_last_round_and_names_the_file(
    run: RunFolder, monkeypatch: pytest.MonkeyPatch, code: int, at: str
) -> None:
    from tests.node.test_disk_faults import failing_disk

    run.save_checkpoint(1, _state(1), {"clients": {}})
    run.append_metrics({"round": 1, "ndcg@10": 0.5})
    before = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    with failing_disk(monkeypatch, code=code, at=at, under=run.path):
        with pytest.raises(OSError) as saving:
            run.save_checkpoint(2, _state(2), {"clients": {}})
        with pytest.raises(OSError) as appending:
            run.append_metrics({"round": 2, "ndcg@10": 0.6})
    for info, target in ((saving, run.checkpoint_path(2)), (appending, run.metrics_path)):
        assert info.value.errno == code
        assert info.value.filename == str(target), "names the file, not its temp file"
    assert {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()} == before
    assert run.latest()[0] == 1 and [r["round"] for r in run.read_metrics()] == [1]


@pytest.mark.parametrize(("code", "at"), DISK_FAULTS)
def test_a_run_folder_write_on_a_full_disk_is_one_cli_line(
    run: RunFolder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
    at: str,
) -> None:
    """What every ``ecrec`` command (and ``ecrec-server``) does with the error above:
    one line naming the file and the reason, exit 1, no traceback."""
    from ecrec.cli import run_guarded
    from tests.node.test_disk_faults import failing_disk

    with failing_disk(monkeypatch, code=code, at=at, under=run.path):
        status = run_guarded(
            lambda: run.append_metrics({"round": 0, "ndcg@10": 0.5}) or 0, prog="ecrec"
        )
    err = capsys.readouterr().err
    assert status == 1
    assert err == f"ecrec: error: {run.metrics_path}: {os.strerror(code)}\n"
