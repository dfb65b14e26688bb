"""``ecrec data``: what a user sees and the exit codes scripts rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ecrec.cli import main
from ecrec.data.synth import SynthConfig, synthesize


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_synth_then_validate_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "market"
    code, out, _ = run(
        capsys,
        "data", "synth", "--merchants", "3", "--out", str(out_dir), "--seed", "5",
        "--queries-per-merchant", "10", "--candidates", "6", "--validation-queries", "4",
    )  # fmt: skip
    assert code == 0
    assert f"wrote 5 files to {out_dir}" in out
    assert "merchant m00:" in out and "tier large" in out
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 5 and manifest["config"]["candidates_per_query"] == 6

    code, out, _ = run(capsys, "data", "validate", str(out_dir))
    assert code == 0
    total = sum(len(pd.read_parquet(p)) for p in out_dir.glob("*.parquet"))
    assert out.strip() == f"ok: {total} rows in 4 files"


def test_synth_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "data",
        "synth",
        "--merchants",
        "2",
        "--queries-per-merchant",
        "4",
        "--out",
        str(tmp_path),
    ]
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args)
    assert code == 2
    assert "already holds a marketplace" in err and "--force" in err
    assert run(capsys, *args, "--force")[0] == 0


def test_broken_parquet_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = synthesize(SynthConfig(merchants=1, queries_per_merchant=3)).merchants["m00"]
    df = df.drop(columns=["user_segment"])
    df.loc[1, "label"] = 7
    df.loc[2, "merchant_tier"] = "medium"
    df.loc[3, "query"] = ""
    path = tmp_path / "broken.parquet"
    df.to_parquet(path)

    code, out, err = run(capsys, "data", "validate", str(path))
    assert code == 2
    assert out.splitlines() == [
        f"{path}: user_segment: required column is missing",
        f"{path}:4: query: empty value",
        f"{path}:2: label: must be 0 or 1, got 7",
        f"{path}:3: merchant_tier: must be large or small, got 'medium'",
    ]
    assert err.strip() == "4 problems in 1 file (30 rows read)"


def test_a_non_parquet_file_gives_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "impressions.parquet"
    path.write_text("query_id,query\n1,shoes\n")
    code, out, err = run(capsys, "data", "validate", str(path))
    assert code == 2
    assert len(out.splitlines()) == 1
    assert out.startswith(f"{path}: file: not a readable parquet file")
    assert "Traceback" not in out + err


def test_import_csv_with_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "log.csv"
    pd.DataFrame(
        {
            "q": [f"query {i // 3}" for i in range(18)],
            "sku": [f"s{i % 3}" for i in range(18)],
            "name": [f"Item {i % 3}" for i in range(18)],
            "clicked": [int(i % 3 == 0) for i in range(18)],
        }
    ).to_csv(src, index=False)
    out_dir = tmp_path / "imported"
    code, out, err = run(
        capsys,
        "data", "import", "--format", "csv", str(src), "--out", str(out_dir),
        "--map", "q=query", "--map", "sku=product_id", "--map", "name=product_title",
        "--map", "clicked=label", "--merchants", "2", "--alpha", "10", "--seed", "1",
    )  # fmt: skip
    assert code == 0, err
    assert f"to {out_dir}" in out
    assert run(capsys, "data", "validate", str(out_dir))[0] == 0


def test_bad_map_syntax_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "log.csv"
    src.write_text("q\nshoes\n")
    code, _, err = run(
        capsys, "data", "import", "--format", "csv", str(src), "--out", str(tmp_path / "o"),
        "--map", "q->query",
    )  # fmt: skip
    assert code == 2
    assert (
        err.strip()
        == "ecrec: error: --map 'q->query': expected COLUMN=FIELD, e.g. --map title=product_title"
    )
    assert not (tmp_path / "o").exists()


def test_import_of_a_missing_source_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "data",
        "import",
        "--format",
        "wands",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "no such file or folder" in err
