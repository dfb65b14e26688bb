"""Plain csv / jsonl files whose columns a mapping names onto contract fields."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ecrec.data.importers.columns import _check_lengths, _first_row, _stable_id
from ecrec.data.importers.readers import _read_delimited, _read_jsonl
from ecrec.data.schema import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, short_repr
from ecrec.errors import DataError

#: Fields a mapping may target: the contract plus a raw ``user_id`` (hashed on import).
MAPPABLE_FIELDS: frozenset[str] = frozenset({*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "user_id"})
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    """Parse ``COLUMN=FIELD`` strings from the command line into a mapping."""
    mapping: dict[str, str] = {}
    for item in items or []:
        column, sep, target = item.partition("=")
        column, target = column.strip(), target.strip()
        if not sep or not column or not target:
            raise DataError(
                f"--map {item!r}: expected COLUMN=FIELD, e.g. --map title=product_title"
            )
        mapping[column] = target
    return mapping


_TRUTHY: dict[str, int] = {"true": 1, "false": 0, "yes": 1, "no": 0}


def _coerce_int(series: pd.Series, *, name: str, source: Path, allow_bool: bool) -> pd.Series:
    """Whole numbers from text or JSON values (vectorised: logs have millions of rows)."""
    values = series.reset_index(drop=True)
    missing = values.isna()
    text = values.astype("object").where(~missing, "").astype("str").str.strip()
    empty = missing | text.eq("")
    if empty.any():
        raise DataError(f"{source}:{_first_row(empty)}: {name}: empty value")
    if values.dtype == object and not allow_bool:
        is_bool = values.map(lambda v: isinstance(v, bool | np.bool_))
        if is_bool.any():
            row = _first_row(is_bool)
            raise DataError(f"{source}:{row}: {name}: expected an integer, got {values[row - 1]}")
    truth = text.str.lower().map(_TRUTHY) if allow_bool else pd.Series(np.nan, index=text.index)
    numbers = pd.to_numeric(text.where(truth.isna(), "0"), errors="coerce")
    numbers = numbers.where(truth.isna(), truth).astype("float64")
    bad = numbers.isna() | (numbers % 1 != 0) | (numbers.abs() > 2**53)
    if bad.any():
        row = _first_row(bad)
        raise DataError(
            f"{source}:{row}: {name}: expected an integer, got {short_repr(values[row - 1])}"
        )
    return pd.Series(numbers.astype("int64").to_numpy(), index=series.index)


def _as_text(series: pd.Series, *, name: str, source: Path) -> pd.Series:
    """A mapped column as text; JSON objects and arrays are refused, not stringified.

    Only JSON values can be objects or hold lone surrogates (``"\\ud800"``
    escapes, which no file could store); decoded text files cannot.
    """
    if series.dtype == object:
        nested = series.map(lambda v: isinstance(v, dict | list))
        if nested.any():
            row = _first_row(nested)
            raise DataError(f"{source}:{row}: {name}: expected text or a number, got JSON")
        broken = series.map(lambda v: isinstance(v, str) and _SURROGATE_RE.search(v) is not None)
        if broken.any():
            raise DataError(f"{source}:{_first_row(broken)}: {name}: not valid Unicode text")
    return series.astype("object").where(series.notna(), "").astype("str")


def _load_plain(
    src: Path, fmt: str, mapping: Mapping[str, str], *, encoding: str | None
) -> pd.DataFrame:
    if fmt == "csv":
        sep = "\t" if src.suffix.lower() in (".tsv", ".tab") else ","
        raw = _read_delimited(src, sep=sep, encoding=encoding)
    else:
        raw = _read_jsonl(src, encoding=encoding)
    for column, target in mapping.items():
        if target not in MAPPABLE_FIELDS:
            raise DataError(
                f"--map {column}={target}: {target!r} is not a contract field "
                f"(one of {', '.join(sorted(MAPPABLE_FIELDS))})"
            )
        if column not in raw.columns:
            raise DataError(f"{src}: {column}: mapped column not in the file")
    targets = list(mapping.values())
    duplicated = sorted({t for t in targets if targets.count(t) > 1})
    if duplicated:
        raise DataError(f"--map: field {duplicated[0]!r} is the target of more than one column")
    # A source column already named like a mapping target is replaced by the mapped one.
    shadowed = [t for t in mapping.values() if t in raw.columns and t not in mapping]
    renamed = raw.drop(columns=shadowed).rename(columns=dict(mapping))
    df = renamed[[c for c in renamed.columns if c in MAPPABLE_FIELDS]].reset_index(drop=True)

    hint = "map a source column onto it with --map COLUMN={field}"
    for field_name in ("query", "product_id", "product_title"):
        if field_name not in df.columns:
            raise DataError(
                f"{src}: {field_name}: required field missing; {hint.format(field=field_name)}"
            )
    if "label" not in df.columns and "relevance" not in df.columns:
        raise DataError(
            f"{src}: label: required field missing (and no relevance to derive it from); "
            f"{hint.format(field='label')}"
        )
    numbers = {"label", "relevance", "position"}
    _check_lengths(df, [c for c in df.columns if c not in numbers], source=src)
    out = pd.DataFrame(index=df.index)
    for name in df.columns:
        if name in ("relevance", "position"):
            out[name] = _coerce_int(df[name], name=name, source=src, allow_bool=False)
        elif name == "label":
            out[name] = _coerce_int(df[name], name=name, source=src, allow_bool=True)
        elif name == "user_id":
            out[name] = df[name].astype("object").where(df[name].notna(), None)
        else:
            out[name] = _as_text(df[name], name=name, source=src)
    if "label" not in out.columns:
        out["label"] = (out["relevance"] >= 2).astype("int64")
    for name in ("query", "product_title", "product_id"):
        empty = out[name].str.strip().eq("")
        if empty.any():
            raise DataError(f"{src}:{_first_row(empty)}: {name}: empty value")
    if "query_id" not in out.columns:
        queries = out["query"].drop_duplicates().tolist()
        ids = {q: _stable_id("q", q.strip().lower()) for q in queries}
        out["query_id"] = out["query"].map(ids).astype("str")
    return out
