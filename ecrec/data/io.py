"""Reading, writing and validating impressions parquet files.

Every file that enters training goes through :func:`validate_frame`, which
lists *all* contract violations as :class:`~ecrec.data.schema.Problem` values
(``file:row: field: message``, rows 1-based) rather than stopping at the first,
so a merchant can fix a file in one pass. Readers turn problems into a
one-line :class:`~ecrec.errors.DataError`; writers are atomic, so a crash never
leaves a half-written file where a good one was.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ecrec.data.schema import (
    LABEL_VALUES,
    MERCHANT_FILE_PATTERN,
    MERCHANT_TIERS,
    OPTIONAL_COLUMNS,
    RELEVANCE_RANGE,
    REQUIRED_COLUMNS,
    VALIDATION_FILE,
    Problem,
)
from ecrec.errors import DataError

#: At most this many rows are listed for one (field, kind of problem); the rest
#: are summarised in one extra problem, so a bad column does not print a million lines.
MAX_ROWS_PER_CHECK = 20

_KINDS: dict[str, str] = {**REQUIRED_COLUMNS, **OPTIONAL_COLUMNS}


@dataclass
class ValidationReport:
    """What :func:`check_path` found: problems plus how much was checked."""

    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _row_problems(
    source: str, field_name: str, rows: Iterable[int], message_for: dict[int, str] | str
) -> list[Problem]:
    """Problems for 0-based positional ``rows``, capped at :data:`MAX_ROWS_PER_CHECK`."""
    rows = list(rows)
    out = []
    for pos in rows[:MAX_ROWS_PER_CHECK]:
        message = message_for if isinstance(message_for, str) else message_for[pos]
        out.append(Problem(source, pos + 1, field_name, message))
    if len(rows) > MAX_ROWS_PER_CHECK:
        first = message_for if isinstance(message_for, str) else "the same kind of problem"
        out.append(
            Problem(
                source,
                None,
                field_name,
                f"{len(rows) - MAX_ROWS_PER_CHECK} more rows with this problem ({first})",
            )
        )
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _check_string_column(
    df: pd.DataFrame, column: str, *, source: str, required: bool
) -> list[Problem]:
    series = df[column]
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        message = f"expected text, found a column of {series.dtype}"
        return [Problem(source, None, column, message)]
    if isinstance(series.dtype, pd.StringDtype):  # fast path: every value is text or missing
        missing = series.isna().to_numpy()
        blank = series.fillna("x").str.strip().eq("").to_numpy()
        empty = (missing | blank).nonzero()[0].tolist() if required else []
        return _row_problems(source, column, empty, "empty value")
    empty: list[int] = []
    wrong: dict[int, str] = {}
    for pos, value in enumerate(series.tolist()):
        if _is_missing(value):
            if required:
                empty.append(pos)
        elif not isinstance(value, str):
            wrong[pos] = f"expected text, got {type(value).__name__} {_short(value)}"
        elif required and not value.strip():
            empty.append(pos)
    return _row_problems(source, column, empty, "empty value") + _row_problems(
        source, column, wrong, wrong
    )


def _int_values(
    df: pd.DataFrame, column: str, *, source: str, required: bool
) -> tuple[list[Problem], pd.Series]:
    """Integer values indexed by 0-based row, plus problems for values that are not integers."""
    series = df[column].reset_index(drop=True)
    if pd.api.types.is_bool_dtype(series.dtype):
        problem = Problem(source, None, column, "expected integers, found a column of bool")
        return [problem], series[:0]
    if pd.api.types.is_integer_dtype(series.dtype):  # fast path
        missing = series.isna()
        problems = _row_problems(
            source, column, missing[missing].index.tolist() if required else [], "empty value"
        )
        return problems, series[~missing].astype("int64")
    values: dict[int, int] = {}
    missing_rows: list[int] = []
    wrong: dict[int, str] = {}
    for pos, value in enumerate(series.tolist()):
        if _is_missing(value):
            if required:
                missing_rows.append(pos)
            continue
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            wrong[pos] = f"expected an integer, got {_short(value)}"
        elif not float(value).is_integer():
            wrong[pos] = f"expected an integer, got {value!r}"
        else:
            values[pos] = int(value)
    problems = _row_problems(source, column, missing_rows, "empty value")
    problems += _row_problems(source, column, wrong, wrong)
    return problems, pd.Series(values, dtype="int64")


def validate_frame(df: pd.DataFrame, *, source: str) -> list[Problem]:
    """Every way ``df`` breaks the data contract, as problems naming file, row and field."""
    problems: list[Problem] = []
    for column in REQUIRED_COLUMNS:
        if column not in df.columns:
            problems.append(Problem(source, None, column, "required column is missing"))
    if df.columns.duplicated().any():
        for column in df.columns[df.columns.duplicated()].unique():
            problems.append(Problem(source, None, str(column), "column appears more than once"))
        return problems

    for column, kind in _KINDS.items():
        if column not in df.columns:
            continue
        required = column in REQUIRED_COLUMNS
        if kind == "string":
            problems += _check_string_column(df, column, source=source, required=required)
            continue
        found, values = _int_values(df, column, source=source, required=required)
        problems += found
        if column == "label":
            bad = values[~values.isin(sorted(LABEL_VALUES))]
            problems += _row_problems(
                source, column, bad.index, {p: f"must be 0 or 1, got {v}" for p, v in bad.items()}
            )
        elif column == "relevance":
            lo, hi = RELEVANCE_RANGE
            bad = values[(values < lo) | (values > hi)]
            problems += _row_problems(
                source,
                column,
                bad.index,
                {p: f"must be between {lo} and {hi}, got {v}" for p, v in bad.items()},
            )
        elif column == "position":
            bad = values[values < 1]
            problems += _row_problems(
                source,
                column,
                bad.index,
                {p: f"must be 1 or more, got {v}" for p, v in bad.items()},
            )

    if "merchant_tier" in df.columns:
        tiers = df["merchant_tier"].reset_index(drop=True)
        is_text = (
            tiers.notna()
            if isinstance(tiers.dtype, pd.StringDtype)
            else tiers.map(lambda v: isinstance(v, str)).astype(bool)
        )
        text = tiers[is_text].astype("str")
        bad_values = text[text.str.strip().ne("") & ~text.isin(sorted(MERCHANT_TIERS))]
        allowed = " or ".join(sorted(MERCHANT_TIERS))
        bad_tier = {p: f"must be {allowed}, got {_short(v)}" for p, v in bad_values.items()}
        problems += _row_problems(source, "merchant_tier", bad_tier, bad_tier)

    keys = ["merchant_id", "query_id", "product_id"]
    if all(k in df.columns for k in keys) and len(df):
        key_frame = df[keys].astype("str").reset_index(drop=True)
        dup = key_frame.duplicated(keep="first")
        if dup.any():
            first_row = key_frame.reset_index().groupby(keys, sort=False)["index"].transform("min")
            messages = {
                int(p): (
                    f"duplicate of row {int(first_row[p]) + 1} "
                    f"(query_id {key_frame.at[p, 'query_id']!r}, "
                    f"merchant {key_frame.at[p, 'merchant_id']!r})"
                )
                for p in dup[dup].index
            }
            problems += _row_problems(source, "product_id", messages, messages)
    return problems


def _parquet_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".parquet")


def _read_parquet(path: Path) -> pd.DataFrame:
    """Read one parquet file, turning any failure into a one-line DataError."""
    try:
        return pq.read_table(path).to_pandas()
    except FileNotFoundError as err:
        raise DataError(f"{path}: file: no such file") from err
    except Exception as err:  # pyarrow raises several types for a bad file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: file: not a readable parquet file ({reason})") from err


def check_path(path: str | os.PathLike[str]) -> ValidationReport:
    """Validate a parquet file or every ``*.parquet`` in a folder, never raising."""
    path = Path(path)
    report = ValidationReport()
    if not path.exists():
        report.problems.append(Problem(str(path), None, "file", "no such file or folder"))
        return report
    if path.is_dir():
        files = _parquet_files(path)
        if not files:
            report.problems.append(Problem(str(path), None, "file", "no .parquet files in folder"))
            return report
    else:
        files = [path]
    for file in files:
        report.files += 1
        try:
            df = _read_parquet(file)
        except DataError as err:
            message = str(err).split(": file: ", 1)[-1]
            report.problems.append(Problem(str(file), None, "file", message))
            continue
        report.rows += len(df)
        report.problems.extend(validate_frame(df, source=str(file)))
    return report


def validate_path(path: str | os.PathLike[str]) -> list[Problem]:
    """Problems in a parquet file or a folder of them (unreadable files are problems too)."""
    return check_path(path).problems


def _raise_first(problems: list[Problem], path: Path) -> None:
    if not problems:
        return
    more = len(problems) - 1
    suffix = (
        f" (and {more} more problem{'s' if more != 1 else ''}; "
        f"run `ecrec data validate {path}` to list them)"
        if more
        else ""
    )
    raise DataError(f"{problems[0]}{suffix}")


def read_impressions(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a contract-valid impressions file (or folder of them) or raise DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file: no such file or folder")
    files = _parquet_files(path) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: file: no .parquet files in folder")
    frames = []
    for file in files:
        df = _read_parquet(file)
        _raise_first(validate_frame(df, source=str(file)), file)
        frames.append(df)
    if len(frames) == 1:
        return frames[0]
    combined = pd.concat(frames, ignore_index=True)
    _raise_first(validate_frame(combined, source=str(path)), path)
    return combined


def write_impressions(
    df: pd.DataFrame, path: str | os.PathLike[str], *, validate: bool = True
) -> Path:
    """Write ``df`` to parquet atomically (temp file + rename), validating it first.

    Refusing to write an invalid frame keeps bad rows from reaching a
    merchant's training folder; the rename means readers see the old file or
    the new one, never half of one.
    """
    path = Path(path)
    if validate:
        _raise_first(validate_frame(df, source=str(path)), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_data_dir(
    data_dir: str | os.PathLike[str],
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Read a folder written by ``ecrec data synth|import``: merchant frames and validation."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data folder not found")
    prefix, suffix = MERCHANT_FILE_PATTERN.split("{merchant_id}")
    merchant_files = sorted(data_dir.glob(MERCHANT_FILE_PATTERN.format(merchant_id="*")))
    if not merchant_files:
        raise DataError(
            f"{data_dir}: no {MERCHANT_FILE_PATTERN.format(merchant_id='*')} files "
            "(make one with `ecrec data synth` or `ecrec data import`)"
        )
    merchants: dict[str, pd.DataFrame] = {}
    for file in merchant_files:
        merchant_id = file.name[len(prefix) : len(file.name) - len(suffix)]
        df = read_impressions(file)
        others = sorted(set(df["merchant_id"].astype("str")) - {merchant_id})
        if others:
            row = int((df["merchant_id"].astype("str") != merchant_id).to_numpy().argmax()) + 1
            raise DataError(
                f"{file}:{row}: merchant_id: {others[0]!r} in the file of merchant {merchant_id!r}"
            )
        merchants[merchant_id] = df
    validation_file = data_dir / VALIDATION_FILE
    if not validation_file.is_file():
        raise DataError(f"{validation_file}: file: validation shard not found")
    return merchants, read_impressions(validation_file)
