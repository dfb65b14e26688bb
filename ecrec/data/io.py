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

import io
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ecrec.atomic import atomic_write_bytes
from ecrec.data.folders import check_output_dir, check_user_path, publish_data_dir
from ecrec.data.schema import (
    MAX_ROWS_PER_CHECK,
    MERCHANT_FILE_PATTERN,
    VALIDATION_FILE,
    Problem,
    check_merchant_id,
)
from ecrec.data.validate import ValidationReport, validate_frame
from ecrec.errors import DataError

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
