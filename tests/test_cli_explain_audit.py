"""``ecrec explain RUN`` and ``ecrec audit RUN``: outputs, files, exit codes, errors.

The run folder is built by hand (config, validation shard, two checkpoints of
the tiny ranker) rather than by ``ecrec simulate``, which takes ~40 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecrec.cli import main
from ecrec.config import RunConfig
from ecrec.data.io import write_impressions
from ecrec.data.synth import Marketplace
from ecrec.model.ranker import RankerConfig
from ecrec.run_context import checkpoint_round, load_run
from ecrec.runfolder import RunFolder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _config(tiny_config: RankerConfig) -> RunConfig:
    return RunConfig(model=tiny_config).replace(
        "data", merchants=2, queries_per_merchant=12, candidates_per_query=6, validation_queries=10
    )


@pytest.fixture
def run_dir(
    tmp_path: Path,
    market: Marketplace,
    tiny_config: RankerConfig,
    tiny_initial_state: dict[str, np.ndarray],
) -> Path:
    """A run folder after round 1: config, data/validation.parquet, rounds 0 and 1."""
    folder = RunFolder(tmp_path / "run")
    folder.create()
    folder.write_config(_config(tiny_config).to_toml())
    write_impressions(market.validation, folder.path / "data" / "validation.parquet")
    rng = np.random.default_rng(1)
    trained = {
        name: (a + rng.normal(0, 0.5, a.shape)).astype(np.float32)
        for name, a in tiny_initial_state.items()
    }
    folder.save_checkpoint(0, tiny_initial_state, {})
    folder.save_checkpoint(1, trained, {})
    return folder.path


# -- run_context --------------------------------------------------------------------


def test_load_run_rebuilds_the_rounds_ranker(run_dir: Path, market: Marketplace) -> None:
    assert checkpoint_round(run_dir) == 1
    config, ranker, validation = load_run(run_dir, device="cpu")
    assert config.model.base_model == "tiny"
    assert len(validation) == len(market.validation)
    state = RunFolder(run_dir).load_checkpoint(1)
    for name, array in ranker.adapter_state().items():
        np.testing.assert_array_equal(array, state[name])
    _, ranker0, _ = load_run(run_dir, server_round=0, device="cpu")
    assert not np.array_equal(
        ranker0.adapter_state()["base_model.model.classifier.weight"],
        state["base_model.model.classifier.weight"],
    )


def test_last_round_comes_from_the_server_state(run_dir: Path) -> None:
    RunFolder(run_dir).save_checkpoint(2, RunFolder(run_dir).load_checkpoint(1), {})
    (run_dir / "checkpoints" / "server_state.json").write_text('{"round": 1}')
    assert checkpoint_round(run_dir) == 1  # round 2 not completed per the server
    (run_dir / "checkpoints" / "server_state.json").unlink()
    assert checkpoint_round(run_dir) == 2


# -- audit --------------------------------------------------------------------------


def test_audit_prints_groups_and_records_the_round(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "audit", str(run_dir), "--device", "cpu")
    assert code == 0, err
    assert "round 1:" in out and "user_segment" in out and "merchant_tier" in out
    assert "ndcg@10" in out and "provider exposure" in out
    # 10 validation queries are far below min-queries-per-group (30): nothing is compared.
    assert "ndcg@10_gap - (CI -, max 0.1): too few queries" in out
    assert "no fairness flags" in out
    data = json.loads((run_dir / "fairness.json").read_text())
    assert [r["round"] for r in data["rounds"]] == [1]
    assert data["latest"]["status_counts"]["too few queries"] >= 4
    assert data["latest"]["round"] == 1

    code, out, _ = run(
        capsys, "audit", str(run_dir), "--round", "0", "--by", "user_segment,age",
        "--k", "5", "--threshold", "0.5", "--device", "cpu",
    )  # fmt: skip
    assert code == 0
    assert "no 'age' column" in out
    data = json.loads((run_dir / "fairness.json").read_text())
    assert [r["round"] for r in data["rounds"]] == [0, 1]
    round0 = data["rounds"][0]
    assert round0["config"]["k"] == 5 and round0["config"]["threshold"] == 0.5
    assert list(round0["groups"]) == ["user_segment"]
    assert data["latest"]["round"] == 1  # the trend keeps the highest round as latest


def test_audit_prints_flags_and_still_exits_zero(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An impossible threshold: any difference at all in selection rates is flagged.
    code, out, _ = run(
        capsys, "audit", str(run_dir), "--min-queries-per-group", "2", "--threshold", "-0.5",
        "--max-ndcg-gap", "0", "--device", "cpu",
    )  # fmt: skip
    assert code == 0
    assert "FAIRNESS FLAG" in out and "FLAG " in out and "CI " in out
    data = json.loads((run_dir / "fairness.json").read_text())
    assert data["latest"]["flags"]
    assert all(f["ci"][0] > f["threshold"] for f in data["latest"]["flags"])


# -- explain ------------------------------------------------------------------------


def test_explain_writes_files_and_a_summary(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "explain", str(run_dir), "--queries", "2", "--top-k", "1",
        "--max-evals", "20", "--no-fields", "--seed", "4", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert "round 1: explained 2 pairs" in out
    assert "faithfulness:" in out and "top tokens" in out
    assert f"wrote {run_dir / 'explanations.json'}" in out
    data = json.loads((run_dir / "explanations.json").read_text())
    assert data["round"] == 1 and data["seed"] == 4 and len(data["pairs"]) == 2
    assert (run_dir / "explanations" / "global_tokens.png").is_file()
    assert len(list((run_dir / "explanations").glob("pair_*.html"))) == 2


# -- errors: one line, non-zero exit ---------------------------------------------------


def _one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ecrec: error: "), err
    return lines[0]


@pytest.mark.parametrize("command", ["audit", "explain"])
def test_missing_or_incomplete_run_folders(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_config: RankerConfig
) -> None:
    assert "no such run folder" in _one_line_error(capsys, command, str(tmp_path / "nope"))
    assert "config.toml: missing" in _one_line_error(capsys, command, str(tmp_path))
    RunFolder(tmp_path).write_config(_config(tiny_config).to_toml())
    assert "no checkpoints" in _one_line_error(capsys, command, str(tmp_path))


def test_missing_round_and_missing_validation(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _one_line_error(capsys, "audit", str(run_dir), "--round", "7")
    assert "no checkpoint for round 7" in line and "available: 0, 1" in line
    (run_dir / "data" / "validation.parquet").unlink()
    line = _one_line_error(capsys, "explain", str(run_dir))
    assert "validation shard not found" in line


def test_corrupt_checkpoint_is_one_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "checkpoints" / "round_0001.npz").write_bytes(b"not a zip")
    assert "unreadable checkpoint" in _one_line_error(capsys, "audit", str(run_dir))


@pytest.mark.parametrize(
    "argv",
    [
        ["explain", "RUN", "--queries", "0"],
        ["explain", "RUN", "--round", "-1"],
        ["audit", "RUN", "--threshold", "nan"],
        ["audit", "RUN", "--by", ","],
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0]


def test_bad_audit_config_is_one_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "k must be >= 1" in _one_line_error(capsys, "audit", str(run_dir), "--k", "0")
