"""Bad input to the CLI: one clear line naming what is wrong, non-zero exit, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrec.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip()


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--config", str(tmp_path / "nope.toml"), "--out", "x"]) == 2
    err = _err(capsys)
    assert err.count("\n") == 0 and "nope.toml: config file not found" in err


def test_invalid_toml_and_unknown_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nbatch-size = 3\n")
    assert main(["simulate", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "invalid TOML" in _err(capsys)
    bad.write_text("[train]\nbatch-sise = 3\n")
    assert main(["simulate", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = _err(capsys)
    assert "train.batch-sise: unknown key" in err and str(bad) in err
    bad.write_text('[federation]\nrounds = "three"\n')
    assert main(["simulate", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "federation.rounds: must be an integer" in _err(capsys)


def test_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = str(ROOT / "configs" / "tiny.toml")
    assert main(["simulate", "--config", tiny, "--merchants", "1", "--out", "x"]) == 2
    assert "--merchants must be >= 2" in _err(capsys)
    assert main(["simulate", "--config", tiny, "--resume"]) == 2
    assert "--resume needs --out" in _err(capsys)
    assert main(["simulate", "--config", tiny, "--resume", "--out", str(tmp_path)]) == 2
    assert "nothing to resume" in _err(capsys)
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--merchant-budget", "m01"])
    assert exit_info.value.code == 2
    assert "expected MERCHANT=EPSILON" in capsys.readouterr().err


def test_existing_run_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"round": 0}\n')
    tiny = str(ROOT / "configs" / "tiny.toml")
    assert main(["simulate", "--config", tiny, "--out", str(run)]) == 2
    assert "already holds a run" in _err(capsys)
    assert (run / "metrics.jsonl").read_text() == '{"round": 0}\n'


def test_bad_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = str(ROOT / "configs" / "tiny.toml")
    code = main(
        ["simulate", "--config", tiny, "--data", str(tmp_path / "nodata"), "--out", str(tmp_path)]
    )
    assert code == 2
    assert "data folder not found" in _err(capsys)
