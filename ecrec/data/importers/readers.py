"""Reading text files strictly: encodings and byte-order marks, delimited files, JSON lines."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ecrec.data.importers.columns import _check_lengths
from ecrec.errors import ConfigError, DataError

#: Byte-order marks and the codec each one means, longest first.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _check_encoding(encoding: str | None) -> None:
    if encoding is None:
        return
    try:
        codecs.lookup(encoding)
    except LookupError as err:
        raise ConfigError(f"--encoding {encoding!r}: unknown text encoding") from err


def _read_text(path: Path, *, encoding: str | None) -> str:
    """The whole file as text: UTF-8 unless a byte-order mark or ``encoding`` says otherwise.

    Refuses undecodable bytes and NUL bytes with the line they are on, instead
    of letting a parser guess (and silently cut a field at a NUL).
    """
    if not path.is_file():
        raise DataError(f"{path}: file: {'not a file' if path.exists() else 'not found'}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: file: cannot read ({err.strerror})") from err
    codec = encoding or next((name for bom, name in _BOMS if raw.startswith(bom)), "utf-8")
    if codec.replace("_", "-").lower() in ("utf-8", "utf8") and raw.startswith(codecs.BOM_UTF8):
        codec = "utf-8-sig"
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as err:
        line = raw[: err.start].decode(codec, errors="replace").count("\n") + 1
        hint = "" if encoding else "; save it as UTF-8 or name its encoding with --encoding"
        raise DataError(
            f"{path}: line {line}: not valid {codec} text (byte 0x{raw[err.start]:02x}){hint}"
        ) from err
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise DataError(f"{path}: line {line}: NUL byte in a text file (binary or wrong encoding?)")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def _parse_error_line(message: str) -> str:
    """``line N`` from a pandas parser message (its "row" counts from 0), else ``file``."""
    found = re.search(r"(line|row) (\d+)", message)
    if not found:
        return "file"
    return f"line {int(found.group(2)) + (1 if found.group(1) == 'row' else 0)}"


def _read_delimited(path: Path, *, sep: str, encoding: str | None) -> pd.DataFrame:
    """A delimited text file as all-text columns, refusing ragged rows and bad quoting.

    The standard ``csv`` module checks the structure first (strict quoting, the
    same number of fields on every row, one name per column), because the fast
    pandas parser pads short rows silently; pandas then builds the frame.
    """
    text = _read_text(path, encoding=encoding)
    if not text.strip():
        raise DataError(f"{path}: file: empty")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, len(text) + 1))  # lengths are checked below, by name
    header: list[str] | None = None
    rows = 0
    try:
        for record in reader:
            if not record:
                continue
            if header is None:
                header = record
                continue
            rows += 1
            if len(record) != len(header):
                raise DataError(
                    f"{path}:{rows}: fields: expected {len(header)} fields, found {len(record)} "
                    f"(line {reader.line_num}; a ragged row or an unquoted {sep!r})"
                )
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: malformed ({err})") from err
    finally:
        csv.field_size_limit(old_limit)
    assert header is not None  # the text is not blank
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise DataError(f"{path}: header: column {duplicated[0]!r} appears more than once")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            dtype="str",
            keep_default_na=False,
            quoting=csv.QUOTE_MINIMAL,
            engine="c",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: {_parse_error_line(message)}: cannot parse ({message})") from err
    if len(frame) != rows or list(frame.columns) != [str(h) for h in header]:
        if len(frame) == rows and len(frame.columns) == len(header):
            frame.columns = header  # pandas renames blank headers "Unnamed: N"
        else:
            raise DataError(f"{path}: file: rows could not be read consistently (check quoting)")
    _check_lengths(frame, list(frame.columns), source=path)
    return frame


def _read_jsonl(path: Path, *, encoding: str | None) -> pd.DataFrame:
    """One JSON object per line (blank lines skipped); errors name the line."""
    text = _read_text(path, encoding=encoding)
    records: list[dict[str, Any]] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{line_no}: line: not valid JSON ({err.msg})") from err
        except (ValueError, RecursionError) as err:  # huge integers, deep nesting
            reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
            raise DataError(f"{path}:{line_no}: line: not valid JSON ({reason[:80]})") from err
        if not isinstance(record, dict):
            raise DataError(f"{path}:{line_no}: line: expected a JSON object")
        records.append(record)
    if not records:
        raise DataError(f"{path}: file: no records")
    # Object columns: JSON may hold values Arrow-backed text cannot (lone surrogates),
    # which :func:`_as_text` refuses with their line instead of a crash here.
    return pd.DataFrame(records, dtype=object)
