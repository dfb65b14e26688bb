"""Reading, writing and validating impressions parquet files and data folders.

Every file that enters training goes through :func:`validate_frame`, which
lists *all* contract violations as :class:`~ecrec.data.schema.Problem` values
(``file:row: field: message``, rows 1-based) rather than stopping at the first,
so a merchant can fix a file in one pass. Readers turn problems into a
one-line :class:`~ecrec.errors.DataError`. Writers are atomic: a file is
replaced whole (:func:`write_impressions`), and a data folder is built beside
its destination and renamed into place (:func:`publish_data_dir`), so a crash
or a bad input never leaves a half-written file or folder where a good one was.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ecrec.atomic import atomic_write_bytes, fsync_dir
from ecrec.data.schema import (
    LABEL_VALUES,
    MANIFEST_FILE,
    MAX_ROWS_PER_CHECK,
    MAX_TEXT_CHARS,
    MERCHANT_FILE_PATTERN,
    MERCHANT_TIERS,
    OPTIONAL_COLUMNS,
    RELEVANCE_RANGE,
    REQUIRED_COLUMNS,
    SAFE_NAME_PATTERN,
    SAFE_NAME_RULE,
    VALIDATION_FILE,
    Problem,
    check_merchant_id,
    row_problems,
    short_repr,
)
from ecrec.errors import ConfigError, DataError

__all__ = [
    "MAX_ROWS_PER_CHECK",
    "ValidationReport",
    "check_output_dir",
    "check_path",
    "check_user_path",
    "load_data_dir",
    "publish_data_dir",
    "read_impressions",
    "read_parquet_frame",
    "validate_frame",
    "validate_path",
    "write_impressions",
]

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
        lengths = series.str.len().fillna(0).to_numpy()
        long = {int(p): _too_long(int(lengths[p])) for p in (lengths > MAX_TEXT_CHARS).nonzero()[0]}
        return row_problems(source, column, empty, "empty value") + row_problems(
            source, column, long, long
        )
    empty: list[int] = []
    wrong: dict[int, str] = {}
    for pos, value in enumerate(series.tolist()):
        if _is_missing(value):
            if required:
                empty.append(pos)
        elif not isinstance(value, str):
            wrong[pos] = f"expected text, got {type(value).__name__} {short_repr(value)}"
        elif required and not value.strip():
            empty.append(pos)
        elif len(value) > MAX_TEXT_CHARS:
            wrong[pos] = _too_long(len(value))
    return row_problems(source, column, empty, "empty value") + row_problems(
        source, column, wrong, wrong
    )


def _too_long(length: int) -> str:
    return f"{length} characters, more than the {MAX_TEXT_CHARS} one value may hold"


def _unsafe_merchant_ids(df: pd.DataFrame, *, source: str) -> list[Problem]:
    """Merchant ids become file names, so only :data:`SAFE_NAME_PATTERN` ids are allowed."""
    ids = df["merchant_id"].reset_index(drop=True)
    if isinstance(ids.dtype, pd.StringDtype):  # fast path: text or missing
        text = ids.dropna()
    else:  # non-text values are reported by the type check
        text = ids[ids.map(lambda v: isinstance(v, str))].astype("str")
    text = text[text.str.strip().ne("")]  # empty values are reported as such
    bad = text[~text.str.fullmatch(SAFE_NAME_PATTERN)]
    messages = {
        int(p): f"{short_repr(v)} is not allowed as a merchant id ({SAFE_NAME_RULE})"
        for p, v in bad.items()
    }
    return row_problems(source, "merchant_id", messages, messages)


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
        problems = row_problems(
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
            wrong[pos] = f"expected an integer, got {short_repr(value)}"
        elif not float(value).is_integer():
            wrong[pos] = f"expected an integer, got {value!r}"
        else:
            values[pos] = int(value)
    problems = row_problems(source, column, missing_rows, "empty value")
    problems += row_problems(source, column, wrong, wrong)
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
            problems += row_problems(
                source, column, bad.index, {p: f"must be 0 or 1, got {v}" for p, v in bad.items()}
            )
        elif column == "relevance":
            lo, hi = RELEVANCE_RANGE
            bad = values[(values < lo) | (values > hi)]
            problems += row_problems(
                source,
                column,
                bad.index,
                {p: f"must be between {lo} and {hi}, got {v}" for p, v in bad.items()},
            )
        elif column == "position":
            bad = values[values < 1]
            problems += row_problems(
                source,
                column,
                bad.index,
                {p: f"must be 1 or more, got {v}" for p, v in bad.items()},
            )

    if "merchant_id" in df.columns:
        problems += _unsafe_merchant_ids(df, source=source)

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
        bad_tier = {p: f"must be {allowed}, got {short_repr(v)}" for p, v in bad_values.items()}
        problems += row_problems(source, "merchant_tier", bad_tier, bad_tier)

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
            problems += row_problems(source, "product_id", messages, messages)
    return problems


def _parquet_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".parquet")


def read_parquet_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read one parquet file into pandas, turning any failure into a one-line DataError.

    The one parquet reader of the data layer (importers and validators both use it).
    """
    path = Path(path)
    if not path.is_file():
        reason = "not a file" if path.exists() else "no such file"
        raise DataError(f"{path}: file: {reason}")
    try:
        table = pq.read_table(path)
        table.validate(full=True)  # parquet readers do not check text is valid UTF-8
        return table.to_pandas()
    except MemoryError as err:
        raise DataError(f"{path}: file: too large to read into memory") from err
    except Exception as err:  # pyarrow raises many types for a bad or hostile file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: file: not a readable parquet file ({reason[:200]})") from err


def check_path(path: str | os.PathLike[str], *, privacy: bool = True) -> ValidationReport:
    """Validate a parquet file or every ``*.parquet`` in a folder, never raising.

    With ``privacy`` (the default) plain PII left in text columns and raw user
    ids are problems too (:func:`~ecrec.data.desensitize.find_plain_pii`).
    """
    from ecrec.data.desensitize import find_plain_pii

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
            df = read_parquet_frame(file)
        except DataError as err:
            message = str(err).split(": file: ", 1)[-1]
            report.problems.append(Problem(str(file), None, "file", message))
            continue
        report.rows += len(df)
        report.problems.extend(validate_frame(df, source=str(file)))
        if privacy:
            report.problems.extend(find_plain_pii(df, source=str(file)))
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
        df = read_parquet_frame(file)
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
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
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
        merchant_id = check_merchant_id(
            file.name[len(prefix) : len(file.name) - len(suffix)], source=str(file)
        )
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


# --------------------------------------------------------------------------- paths and folders

#: Longest path the CLI accepts (Linux PATH_MAX).
MAX_PATH_CHARS = 4096


def check_user_path(text: str | os.PathLike[str], *, option: str) -> Path:
    """A path typed by the user, refused with a one-line error if no file system could hold it.

    NUL bytes and control characters would otherwise surface as tracebacks
    (``ValueError: embedded null byte``) or as confusing file names.
    """
    value = os.fspath(text)
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not value.strip():
        raise ConfigError(f"{option}: empty path")
    if len(value) > MAX_PATH_CHARS:
        raise ConfigError(f"{option}: path longer than {MAX_PATH_CHARS} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ConfigError(f"{option}: {short_repr(value)}: control character in path")
    return Path(value)


def _is_data_dir_entry(path: Path) -> bool:
    """What a data folder may hold; anything else means the folder is not ours to replace."""
    prefix, suffix = MERCHANT_FILE_PATTERN.split("{merchant_id}")
    name = path.name
    return path.is_file() and (
        name in (VALIDATION_FILE, MANIFEST_FILE)
        or (name.startswith(prefix) and name.endswith(suffix))
    )


def check_output_dir(out: Path, *, replace: bool) -> None:
    """Refuse an output folder that cannot take a new marketplace, before any work is done."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DataError(f"{out}: exists and is not a folder")
    if not out.exists():
        return
    entries = sorted(out.iterdir())
    if not entries:
        return
    foreign = [e for e in entries if not _is_data_dir_entry(e)]
    if foreign:
        raise DataError(
            f"{out}: holds files that are not part of a marketplace "
            f"(e.g. {foreign[0].name!r}); choose an empty or new folder"
        )
    if not replace:
        raise DataError(
            f"{out}: already holds a marketplace; "
            "choose another folder or pass --force to replace it"
        )


def publish_data_dir(
    write: Callable[[Path], object], out: str | os.PathLike[str], *, replace: bool = False
) -> Path:
    """Build a data folder with ``write(tmp_folder)`` and rename it into place as ``out``.

    The folder is written beside ``out`` (same file system), fsync'd, and only
    then renamed, so readers and a later crash see either the old folder or
    the complete new one, never a mix; on any failure the temp folder is
    removed and ``out`` is left as it was. With ``replace`` an existing
    marketplace in ``out`` is swapped out (renamed aside, then deleted).
    Hand-written because no standard library call swaps folders atomically.
    """
    out = Path(out).absolute()
    check_output_dir(out, replace=replace)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write(tmp)
        for entry in tmp.iterdir():
            if entry.is_file() and not entry.is_symlink():
                with entry.open("rb") as handle:
                    os.fsync(handle.fileno())
        fsync_dir(tmp)
        check_output_dir(out, replace=replace)  # nobody filled it meanwhile
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "data")
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old / "data", out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    fsync_dir(out.parent)
    return out
