"""A full or read-only disk on the merchant's node (issue 10, row 3).

The disk is made to fail at the system call where a real one does: ``ENOSPC`` when the
data is flushed (``fsync``) or renamed into place, ``EROFS`` when a file is created or
opened for writing. Only files under one folder fail, so the rest of the test (and the
tokeniser cache, where wanted) still works. Each case runs a real round on the tiny
ranker and checks: the ledger and its anchor are byte-identical afterwards (or, when
only the anchor fails, the spend is recorded and rolled forward: over-count, never
under-count), no temp file is left, no update is released (``run_round`` raises, so the
ClientApp sends an error reply, never arrays) and the error is one line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecrec.cli import main
from ecrec.config import RunConfig, load_config
from ecrec.errors import EcrecError, PrivacyError
from ecrec.node import NodePolicy
from tests.node.test_node import MERCHANT, _on_disk, _round

REPO = Path(__file__).resolve().parents[2]
TINY_CROSS_ENCODER = (
    (REPO / "configs" / "tiny.toml")
    .read_text("utf-8")
    .replace("[model]\n", '[model]\narchitecture = "cross-encoder"\n')
)

# The same fixtures as tests/node/test_node.py (the tiny config, merchant m01's ~40 rows).


@pytest.fixture(scope="module")
def honest() -> RunConfig:
    config = load_config(REPO / "configs" / "tiny.toml").replace("train", device="cpu")
    return config.replace("model", architecture="cross-encoder")  # the ``ranker`` fixture's


@pytest.fixture(scope="module")
def shoppers(market) -> pd.DataFrame:
    return market.merchants[MERCHANT]


@pytest.fixture
def global_state(tiny_initial_state) -> dict[str, np.ndarray]:
    return {name: array + np.float32(0.01) for name, array in tiny_initial_state.items()}


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


@dataclass
class Disk:
    """Which files fail, and how; ``hits`` lists what was refused."""

    errno: int
    at: str  # "create" (open/mkstemp), "flush" (fsync) or "rename" (os.replace)
    under: Path
    hits: list[str]

    def covers(self, path: str | os.PathLike[str]) -> bool:
        return Path(os.path.abspath(path)).is_relative_to(self.under.absolute())

    def fail(self, path: str | os.PathLike[str]) -> None:
        self.hits.append(str(path))
        raise OSError(self.errno, os.strerror(self.errno), str(path))


@contextlib.contextmanager
def failing_disk(
    monkeypatch: pytest.MonkeyPatch, *, code: int, at: str, under: Path
) -> Iterator[Disk]:
    disk = Disk(errno=code, at=at, under=under, hits=[])
    real_open, real_mkstemp = os.open, tempfile.mkstemp
    real_fsync, real_replace = os.fsync, os.replace

    def fake_open(path, flags, *args, **kwargs):
        if disk.at == "create" and flags & _WRITE_FLAGS and disk.covers(path):
            disk.fail(path)
        return real_open(path, flags, *args, **kwargs)

    def fake_mkstemp(*args, **kwargs):
        folder = kwargs.get("dir") or (args[2] if len(args) > 2 else tempfile.gettempdir())
        if disk.at == "create" and disk.covers(folder):
            disk.fail(Path(folder) / "mkstemp")
        return real_mkstemp(*args, **kwargs)

    def fake_fsync(fd):
        target = ""
        with contextlib.suppress(OSError):  # which file this descriptor is
            target = os.readlink(f"/proc/self/fd/{fd}")
        if disk.at == "flush" and os.path.isfile(target) and disk.covers(target):
            disk.fail(target)
        return real_fsync(fd)

    def fake_replace(src, dst, *args, **kwargs):
        if disk.at == "rename" and disk.covers(dst):
            disk.fail(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(tempfile, "mkstemp", fake_mkstemp)
    monkeypatch.setattr(os, "fsync", fake_fsync)
    monkeypatch.setattr(os, "replace", fake_replace)
    try:
        yield disk
    finally:
        monkeypatch.undo()


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


FAULTS = [
    pytest.param(errno.ENOSPC, "flush", id="ENOSPC-at-fsync"),
    pytest.param(errno.ENOSPC, "rename", id="ENOSPC-at-rename"),
    pytest.param(errno.EROFS, "create", id="EROFS-at-create"),
]


@pytest.mark.parametrize(("code", "at"), FAULTS)
def test_a_ledger_that_cannot_be_written_keeps_its_bytes_and_releases_nothing(
    code: int, at: str, honest, shoppers, ranker, global_state, tmp_path, monkeypatch
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker, NodePolicy(keep_sent_updates=True))
    node = disk.node()
    _ = node.ledger  # opened (and verified) before the disk fills, as a running node's is
    before = {"ledger": _tree(disk.settings.ledger_path.parent), "anchor": disk.files()["anchor"]}
    sent = disk.settings.journal_path.with_suffix(".sent")
    with (
        failing_disk(monkeypatch, code=code, at=at, under=disk.settings.ledger_path.parent) as fs,
        pytest.raises(PrivacyError) as info,
    ):
        node.run_round(_round(honest, global_state))
    message = str(info.value)
    assert fs.hits, "the ledger write must have been attempted"
    assert "\n" not in message and str(disk.settings.ledger_path) in message
    assert os.strerror(code) in message
    # A read-only disk already refuses the writer's lock file; a full one, the write.
    assert ("cannot open ledger lock file" if at == "create" else "nothing was recorded") in message
    after = _tree(disk.settings.ledger_path.parent)
    after.pop(disk.settings.ledger_path.name + ".lock", None)
    before["ledger"].pop(disk.settings.ledger_path.name + ".lock", None)
    assert after == before["ledger"], "the ledger folder is byte-identical, no temp file"
    assert disk.files()["anchor"] == before["anchor"]
    assert disk.ledger().rounds == []
    assert not any(r["event"] == "trained" for r in disk.journal()), "nothing was released"
    assert not sent.exists()
    # Once the disk has room again, the same round trains and is recorded once.
    outcome = disk.node().run_round(_round(honest, global_state))
    assert outcome.state is not None and disk.ledger().rounds == [1]


@pytest.mark.parametrize(("code", "at"), FAULTS)
def test_an_anchor_that_cannot_be_advanced_records_the_spend_and_releases_nothing(
    code: int, at: str, honest, shoppers, ranker, global_state, tmp_path, monkeypatch
) -> None:
    """The crash rule: the ledger is written before the anchor, so the spend is on disk;
    the update is still not released, and the next open rolls the anchor forward. The
    round is then declined as already spent: over-count, never under-count."""
    disk = _on_disk(tmp_path, shoppers, ranker)
    node = disk.node()
    _ = node.ledger
    anchor = disk.files()["anchor"]
    with (
        failing_disk(monkeypatch, code=code, at=at, under=disk.settings.key_file.parent) as fs,
        pytest.raises(PrivacyError, match="next open rolls it forward") as info,
    ):
        node.run_round(_round(honest, global_state))
    assert fs.hits and "\n" not in str(info.value)
    assert str(disk.settings.anchor_path) in str(info.value)
    assert disk.files()["anchor"] == anchor and not _temp_files(tmp_path)
    assert disk.ledger().rounds == [1], "the spend is recorded although nothing left"
    assert not any(r["event"] == "trained" for r in disk.journal())
    again = disk.node().run_round(_round(honest, global_state))
    assert again.declined and "already spent" in again.decline_reason
    assert disk.files()["anchor"] != anchor  # rolled forward by the reopening writer


def test_a_read_only_node_disk_refuses_before_training(
    honest, shoppers, ranker, global_state, tmp_path, monkeypatch
) -> None:
    """Everything under the node's folder read-only (the ledger's lock cannot even be
    opened for writing): refused before training, nothing changed anywhere."""
    disk = _on_disk(tmp_path, shoppers, ranker)
    before, adapters = _tree(tmp_path), ranker.adapter_state()
    with (
        failing_disk(monkeypatch, code=errno.EROFS, at="create", under=tmp_path),
        pytest.raises(EcrecError) as info,
    ):
        disk.node().run_round(_round(honest, global_state))
    assert "Read-only file system" in str(info.value) and "\n" not in str(info.value)
    assert _tree(tmp_path) == before
    for name, array in ranker.adapter_state().items():
        np.testing.assert_array_equal(array, adapters[name], err_msg=name)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["ENOSPC", "EROFS"])
def test_a_journal_that_cannot_be_written_releases_nothing(
    code: int, honest, shoppers, ranker, global_state, tmp_path, monkeypatch
) -> None:
    """The journal is written after the spend and before the update is returned: a full
    journal disk means no update (the spend stays recorded) and one line naming it."""
    disk = _on_disk(tmp_path, shoppers, ranker)
    node = disk.node()
    _ = node.ledger
    at = "flush" if code == errno.ENOSPC else "create"
    journal = disk.settings.journal_path
    journal.parent.mkdir(parents=True, exist_ok=True)
    with (
        failing_disk(monkeypatch, code=code, at=at, under=journal),
        pytest.raises(EcrecError) as info,
    ):
        node.run_round(_round(honest, global_state))
    assert f"cannot append to node journal {journal}: {os.strerror(code)}" == str(info.value)
    assert disk.ledger().rounds == [1]  # recorded before: over-count, never under-count


def test_a_tokeniser_cache_that_cannot_be_written_refuses_before_training(
    honest, shoppers, ranker, global_state, tmp_path, monkeypatch
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker)
    node = disk.node()
    _ = node.ledger
    ledger = disk.files()
    cache = disk.settings.journal_path.with_suffix(".cache")
    with (
        failing_disk(monkeypatch, code=errno.ENOSPC, at="flush", under=cache),
        pytest.raises(OSError) as info,
    ):
        node.run_round(_round(honest, global_state))
    assert info.value.errno == errno.ENOSPC and str(cache) in str(info.value.filename)
    assert info.value.filename.endswith(".pt"), "names the file, not the temp file"
    assert disk.files() == ledger and disk.ledger().rounds == []
    assert not _temp_files(tmp_path)


# --------------------------------------------------------------------------- ecrec train


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("code", "at"), [FAULTS[0], FAULTS[2]])
def test_ecrec_train_on_a_full_disk_exits_with_one_line_and_writes_nothing(
    code: int, at: str, shoppers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "m01.parquet"
    shoppers.to_parquet(data)
    ledger = tmp_path / "ledger" / "m01.ledger.json"
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CROSS_ENCODER, encoding="utf-8")
    args = ["train", "--config", str(config), "--data", str(data)]
    args += ["--ledger", str(ledger), "--budget-epsilon", "16"]  # room for a second round
    done, out, err = _run(*args, "--init-ledger", "--out", str(tmp_path / "first.npz"))
    assert done == 0, err
    before = _tree(ledger.parent)
    second = tmp_path / "second.npz"
    with failing_disk(monkeypatch, code=code, at=at, under=ledger.parent):
        done, out, err = _run(*args, "--out", str(second))
    lines = err.strip().splitlines()
    assert done != 0 and lines and "Traceback" not in out + err
    assert lines[-1].startswith("ecrec: error: ") and str(ledger) in lines[-1], err
    assert os.strerror(code) in lines[-1]
    assert [line for line in lines if "error" in line] == [lines[-1]]  # one error line
    after = _tree(ledger.parent)
    assert after == before, "ledger, anchor and lock are as they were"
    assert not second.exists(), "no adapter was written for a round whose spend was not"


# --------------------------------------------------------------------------- a real small disk


@contextlib.contextmanager
def small_tmpfs(folder: Path, *, size_kib: int = 256) -> Iterator[Path]:
    """A real ``size_kib`` tmpfs at ``folder`` (root with mount rights only, else skip)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> None:
    """Write until the file system is full (unbuffered, so closing writes nothing more)."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        for chunk in (4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * chunk)


def test_a_really_full_and_a_really_read_only_tmpfs_leave_the_ledger_as_it_was(
    tmp_path: Path,
) -> None:
    """The same promise on a real file system: a 256 KiB tmpfs holding ledger, key and
    anchor, filled up (``ENOSPC`` from the kernel), then remounted read-only (``EROFS``)."""
    import subprocess

    from ecrec.privacy.ledger import PrivacyLedger

    spend = {"noise_multiplier": 2.0, "sample_rate": 0.01, "steps": 50}
    with small_tmpfs(tmp_path / "disk") as disk:
        ledger = PrivacyLedger.init(
            disk / "m01.json",
            merchant_id="m01",
            budget_epsilon=8.0,
            delta=1e-5,
            accountant="rdp",
            unit="user",
            key_file=disk / "m01.key",
        )
        ledger.record_round(round=1, **spend)
        _fill(disk)
        before = {p.name: p.read_bytes() for p in disk.iterdir() if p.name != "filler"}
        with pytest.raises(PrivacyError, match="No space left on device") as full:
            ledger.record_round(round=2, **spend)
        assert "nothing was recorded" in str(full.value) and "\n" not in str(full.value)
        assert {p.name: p.read_bytes() for p in disk.iterdir() if p.name != "filler"} == before
        assert not _temp_files(disk)
        (disk / "filler").unlink()
        remount = ["mount", "-o", "remount,ro", str(disk)]
        assert subprocess.run(remount, capture_output=True, check=False).returncode == 0
        with pytest.raises(PrivacyError, match="Read-only file system") as read_only:
            ledger.record_round(round=2, **spend)
        assert "\n" not in str(read_only.value)
        assert {p.name: p.read_bytes() for p in disk.iterdir()} == before
        reopened = PrivacyLedger.load(disk / "m01.json", key_file=disk / "m01.key")
        assert reopened.rounds == [1]
