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


def test_train_command_spends_and_then_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from ecrec.data.synth import SynthConfig, synthesize, write_marketplace
    from ecrec.privacy.ledger import PrivacyLedger

    market = synthesize(SynthConfig(merchants=2, queries_per_merchant=12, validation_queries=5))
    write_marketplace(market, tmp_path / "mkt")
    tiny = str(ROOT / "configs" / "tiny.toml")
    data = tmp_path / "mkt" / "merchant_m00.parquet"
    ledger_path = tmp_path / "m00.ledger.json"
    key = tmp_path / "secrets" / "m00.key"
    args = ["train", "--config", tiny, "--data", str(data), "--ledger", str(ledger_path)]
    args += ["--ledger-key-file", str(key)]
    out = tmp_path / "m00.npz"
    # No ledger yet and no --init-ledger: the node refuses (fail closed), one line, exit 4.
    assert main([*args, "--out", str(out), "--budget-epsilon", "2"]) == 4
    err = _err(capsys)
    assert "privacy init" in err or "init-ledger" in err
    assert not out.exists()
    assert main([*args, "--init-ledger", "--out", str(out), "--budget-epsilon", "2"]) == 0
    with np.load(out) as adapters:
        assert len(adapters.files) > 0
    ledger = PrivacyLedger.load(ledger_path, key_file=key)
    assert 0 < ledger.spent_epsilon() <= 2.0
    spent = ledger.spent_epsilon()
    capsys.readouterr()
    # A budget below what is already spent: the node declines and records nothing.
    assert main([*args, "--out", str(out), "--budget-epsilon", f"{spent / 2}"]) != 0
    err = _err(capsys)
    assert "declined" in err and err.count("\n") == 0
    after = PrivacyLedger.load(ledger_path, key_file=key)
    assert after.rounds == [1] and after.spent_epsilon() == spent


def _command_paths() -> list[list[str]]:
    """Every command and subcommand of ``ecrec``, as argv prefixes."""
    import argparse

    from ecrec.cli import build_parser

    paths: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_every_command_prints_its_help(path: list[str], capsys) -> None:
    """argparse formats help text with %: one stray '%' in a help string is a traceback."""
    from ecrec.cli import build_parser

    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*path, "--help"])
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out
