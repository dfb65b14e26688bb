"""Validation names every broken file, row and field; readers and writers never lose data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecrec.data.io import (
    MAX_ROWS_PER_CHECK,
    check_path,
    check_user_path,
    load_data_dir,
    publish_data_dir,
    read_impressions,
    read_parquet_frame,
    validate_frame,
    validate_path,
    write_impressions,
)
from ecrec.data.schema import MAX_TEXT_CHARS, Problem
from ecrec.data.synth import SynthConfig, synthesize, write_marketplace
from ecrec.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    market = synthesize(SynthConfig(merchants=2, queries_per_merchant=6, validation_queries=2))
    return market.merchants["m00"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("market")
    market = synthesize(SynthConfig(merchants=2, queries_per_merchant=6, validation_queries=3))
    write_marketplace(market, out)
    return out


def _by_field(problems: list[Problem]) -> dict[str, list[Problem]]:
    out: dict[str, list[Problem]] = {}
    for p in problems:
        out.setdefault(p.field, []).append(p)
    return out


def test_a_valid_frame_has_no_problems(good: pd.DataFrame) -> None:
    assert validate_frame(good, source="m00.parquet") == []


def test_each_kind_of_problem_is_reported_with_its_row_and_field(good: pd.DataFrame) -> None:
    df = good.drop(columns=["user_segment"]).copy()
    df.loc[1, "label"] = 2
    df.loc[2, "query"] = "   "
    df.loc[3, "merchant_tier"] = "medium"
    df.loc[4, "relevance"] = 7
    df.loc[5, "position"] = 0
    df.loc[6, "product_id"] = df.loc[7, "product_id"]  # same query, same product
    df.loc[8, "product_title"] = None

    problems = validate_frame(df, source="bad.parquet")
    found = {(p.row, p.field) for p in problems}
    assert found == {
        (None, "user_segment"),
        (2, "label"),
        (3, "query"),
        (4, "merchant_tier"),
        (5, "relevance"),
        (6, "position"),
        (8, "product_id"),
        (9, "product_title"),
    }
    text = {str(p) for p in problems}
    assert "bad.parquet: user_segment: required column is missing" in text
    assert "bad.parquet:2: label: must be 0 or 1, got 2" in text
    assert "bad.parquet:4: merchant_tier: must be large or small, got 'medium'" in text
    assert any(t.startswith("bad.parquet:8: product_id: duplicate of row 7") for t in text)


def test_wrong_types_are_reported_not_raised(good: pd.DataFrame) -> None:
    df = good.copy()
    df["label"] = df["label"].astype("object")
    df.loc[0, "label"] = "yes"
    df.loc[1, "label"] = 0.5
    df["query_id"] = range(len(df))
    problems = _by_field(validate_frame(df, source="f"))
    assert [p.row for p in problems["label"]] == [1, 2]
    assert "expected an integer" in problems["label"][0].message
    assert problems["query_id"] == [
        Problem("f", None, "query_id", "expected text, found a column of int64")
    ]


def test_many_bad_rows_are_summarised_not_flooded(good: pd.DataFrame) -> None:
    df = good.copy()
    df["label"] = 5
    problems = validate_frame(df, source="f")
    assert len(problems) == MAX_ROWS_PER_CHECK + 1
    assert problems[-1].row is None
    assert f"{len(df) - MAX_ROWS_PER_CHECK} more rows" in problems[-1].message


CORRUPTIONS = {
    "label": 3,
    "relevance": -1,
    "position": -4,
    "merchant_tier": "huge",
    "query": "",
    "product_text": None,
    "user_segment": " ",
}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_corruption_is_found_at_its_row(good: pd.DataFrame, data: st.DataObject) -> None:
    row = data.draw(st.integers(0, len(good) - 1), label="row")
    field = data.draw(st.sampled_from(sorted(CORRUPTIONS)), label="field")
    df = good.copy()
    df.loc[row, field] = CORRUPTIONS[field]
    problems = validate_frame(df, source="f")
    assert [(p.row, p.field) for p in problems] == [(row + 1, field)]


def test_validate_path_reports_unreadable_files_as_problems(
    tmp_path: Path, good: pd.DataFrame
) -> None:
    missing = validate_path(tmp_path / "nope.parquet")
    assert len(missing) == 1 and "no such file" in missing[0].message

    text = tmp_path / "notes.parquet"
    text.write_text("query,label\nshoes,1\n")
    [problem] = validate_path(text)
    assert problem.row is None and problem.field == "file"
    assert "not a readable parquet file" in str(problem)
    assert "\n" not in str(problem)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no .parquet files" in validate_path(empty)[0].message


def test_a_folder_is_checked_file_by_file(tmp_path: Path, good: pd.DataFrame) -> None:
    write_impressions(good, tmp_path / "a.parquet")
    bad = good.copy()
    bad.loc[0, "label"] = 9
    bad.to_parquet(tmp_path / "b.parquet")
    (tmp_path / "manifest.json").write_text("{}")
    report = check_path(tmp_path)
    assert report.files == 2 and report.rows == 2 * len(good)
    assert [str(p) for p in report.problems] == [
        f"{tmp_path / 'b.parquet'}:1: label: must be 0 or 1, got 9"
    ]


def test_read_impressions_raises_the_first_problem_and_counts_the_rest(
    tmp_path: Path, good: pd.DataFrame
) -> None:
    bad = good.copy()
    bad.loc[0, "label"] = 9
    bad.loc[1, "label"] = 9
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path)
    with pytest.raises(DataError) as err:
        read_impressions(path)
    message = str(err.value)
    assert message.startswith(f"{path}:1: label: must be 0 or 1, got 9")
    assert "1 more problem" in message and "\n" not in message
    with pytest.raises(DataError, match="no such file"):
        read_impressions(tmp_path / "missing.parquet")


def test_write_is_atomic_and_refuses_invalid_frames(tmp_path: Path, good: pd.DataFrame) -> None:
    path = tmp_path / "deep" / "m00.parquet"
    write_impressions(good, path)
    before = path.read_bytes()
    bad = good.copy()
    bad.loc[0, "merchant_tier"] = "medium"
    with pytest.raises(DataError, match="merchant_tier"):
        write_impressions(bad, path)
    assert path.read_bytes() == before, "a refused write leaves the old file intact"
    assert sorted(p.name for p in path.parent.iterdir()) == ["m00.parquet"]
    pd.testing.assert_frame_equal(read_impressions(path), good)


def test_load_data_dir_reads_merchants_and_validation(data_dir: Path) -> None:
    merchants, validation = load_data_dir(data_dir)
    assert sorted(merchants) == ["m00", "m01"]
    assert len(validation) == 30


def test_load_data_dir_names_what_is_missing(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(DataError, match="data folder not found"):
        load_data_dir(tmp_path / "absent")
    with pytest.raises(DataError, match="no merchant_"):
        load_data_dir(tmp_path)

    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    (copy / "validation.parquet").unlink()
    with pytest.raises(DataError, match=r"validation\.parquet: file: validation shard not found"):
        load_data_dir(copy)


def test_load_data_dir_refuses_rows_of_another_merchant(tmp_path: Path, data_dir: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    shutil.copy(copy / "merchant_m00.parquet", copy / "merchant_m01.parquet")
    with pytest.raises(DataError, match=r"merchant_m01.parquet:1: merchant_id: 'm00'"):
        load_data_dir(copy)


# --------------------------------------------------------------------------- hostile files


def test_unsafe_merchant_ids_and_huge_text_are_problems(good: pd.DataFrame) -> None:
    df = good.copy()
    df["merchant_id"] = df["merchant_id"].astype("object")
    df.loc[2, "merchant_id"] = "../../etc"
    df.loc[4, "description"] = "x" * (MAX_TEXT_CHARS + 1)
    assert [str(p) for p in validate_frame(df, source="f")] == [
        f"f:5: description: {MAX_TEXT_CHARS + 1} characters, more than the {MAX_TEXT_CHARS} "
        "one value may hold",
        "f:3: merchant_id: '../../etc' is not allowed as a merchant id "
        "(1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)",
    ]


def test_load_data_dir_refuses_a_merchant_file_name_that_is_not_a_safe_id(
    tmp_path: Path, data_dir: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    (copy / "merchant_m01.parquet").rename(copy / "merchant_..m01.parquet")
    with pytest.raises(DataError, match=r"merchant_\.\.m01\.parquet: merchant_id: '\.\.m01'"):
        load_data_dir(copy)


def test_check_path_lists_plain_pii_without_quoting_it(tmp_path: Path, good: pd.DataFrame) -> None:
    df = good.copy()
    df.loc[3, "query"] = "sofa for jo@example.com"
    df["user_id"] = "alice"
    path = tmp_path / "m.parquet"
    df.to_parquet(path)
    lines = [str(p) for p in check_path(path).problems]
    assert lines == [
        f"{path}: user_id: raw shopper ids; only user_id_hash may be stored",
        f"{path}:4: query: e-mail address left in text (desensitise with `ecrec data import`)",
    ]
    assert check_path(path, privacy=False).problems == []


def test_a_parquet_file_with_broken_utf8_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    offsets = pa.array([0, 2], type=pa.int32()).buffers()[1]
    broken = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(b"\xff\xfe")])
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"query": broken}), path)
    [problem] = check_path(path).problems
    assert problem.field == "file" and "not a readable parquet file" in problem.message
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_parquet_frame(path)


def test_publish_data_dir_leaves_the_old_folder_on_failure(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "market"
    shutil.copytree(data_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def write_half(folder: Path) -> None:
        (folder / "merchant_m00.parquet").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_data_dir(write_half, out, replace=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["market"]
    with pytest.raises(DataError, match="already holds a marketplace"):
        publish_data_dir(lambda folder: None, out, replace=False)

    publish_data_dir(
        lambda folder: (folder / "validation.parquet").write_bytes(b"new"), out, replace=True
    )
    assert [p.name for p in out.iterdir()] == ["validation.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["market"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty path"), ("a\x00b", "control character"), ("x" * 5000, "longer than")],
)
def test_check_user_path_refuses_impossible_paths(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_user_path(text, option="--out")
    assert check_user_path("data/ok", option="--out") == Path("data/ok")
