"""Importers that turn public or in-house search logs into an ecrec marketplace.

Supported formats:

``esci``
    Amazon Shopping Queries (ESCI): a folder holding
    ``shopping_queries_dataset_examples.parquet`` and
    ``shopping_queries_dataset_products.parquet`` (joined on product id and
    locale). E/S/C/I become relevance 3/2/1/0; ``label`` is relevance >= 2.
``wands``
    Wayfair WANDS: a folder with tab-separated ``query.csv``, ``product.csv`` and
    ``label.csv``. Exact/Partial/Irrelevant become relevance 3/1/0; ``label`` is
    1 for Exact.
``csv`` / ``jsonl``
    One plain file whose columns are mapped onto contract fields with
    ``mapping`` (``{"source column": "contract field"}``).

Every import desensitises text and hashes user ids before anything is
returned, splits whole queries into merchants (by an existing ``merchant_id``
column or a Dirichlet split), and holds out a fraction of every merchant's
queries as the server's pooled validation shard. Bad input raises
:class:`~ecrec.errors.DataError` naming the file, row and field.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ecrec.data.desensitize import check_desensitised, desensitize_frame, hash_key_id
from ecrec.data.io import read_parquet_frame, validate_frame
from ecrec.data.partition import DirichletBy, partition_by_merchant, partition_dirichlet
from ecrec.data.schema import (
    COLUMN_ORDER,
    MAX_TEXT_CHARS,
    OPTIONAL_COLUMNS,
    PRODUCT_FIELDS,
    REQUIRED_COLUMNS,
    Problem,
    short_repr,
)
from ecrec.data.synth import Marketplace
from ecrec.errors import ConfigError, DataError

FORMATS: tuple[str, ...] = ("esci", "wands", "csv", "jsonl")
PartitionBy = Literal["merchant", "dirichlet"]

ESCI_EXAMPLES_FILE = "shopping_queries_dataset_examples.parquet"
ESCI_PRODUCTS_FILE = "shopping_queries_dataset_products.parquet"
ESCI_RELEVANCE: dict[str, int] = {"E": 3, "S": 2, "C": 1, "I": 0}
WANDS_FILES: tuple[str, ...] = ("query.csv", "product.csv", "label.csv")
WANDS_RELEVANCE: dict[str, int] = {"Exact": 3, "Partial": 1, "Irrelevant": 0}

#: Words kept from a long description, so product_text fits the ranker's 64 tokens.
MAX_DESCRIPTION_WORDS = 30

#: Fields a mapping may target: the contract plus a raw ``user_id`` (hashed on import).
MAPPABLE_FIELDS: frozenset[str] = frozenset({*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "user_id"})

#: Byte-order marks and the codec each one means, longest first.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_TAG_RE = r"<[^<>]{0,1000}>"
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SPACE_RE = r"\s+"


@dataclass(frozen=True)
class ImportOptions:
    """How to split an imported table and hash its shopper ids."""

    partition_by: PartitionBy = "dirichlet"
    n_merchants: int = 4
    alpha: float = 0.5
    seed: int = 0
    validation_fraction: float = 0.1
    dirichlet_by: DirichletBy = "query"
    #: Per-dataset secret for user-id hashes; needed only when the data has user ids.
    hash_key: bytes | None = None
    #: Text encoding of csv/jsonl/WANDS files; None: UTF-8, or what a byte-order mark says.
    encoding: str | None = None


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


def _text_column(series: pd.Series, *, max_words: int | None = None) -> pd.Series:
    """Text with HTML tags removed and whitespace collapsed (missing values become "")."""
    text = series.astype("object").where(series.notna(), "").astype("str")
    text = text.str.replace(_TAG_RE, " ", regex=True).str.replace(_SPACE_RE, " ", regex=True)
    text = text.str.strip()
    if max_words is not None:
        long = text.str.count(" ") >= max_words
        if long.any():
            text = text.copy()
            text[long] = text[long].str.split(" ", n=max_words).str[:max_words].str.join(" ")
            text[long] = text[long] + " ..."
    return text.reset_index(drop=True)


def _stable_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def _require_columns(df: pd.DataFrame, columns: list[str], *, source: Path) -> None:
    for column in columns:
        if column not in df.columns:
            raise DataError(f"{source}: {column}: required column is missing")


def _first_row(mask: pd.Series) -> int:
    """1-based row of the first True in ``mask``."""
    return int(np.asarray(mask, dtype=bool).argmax()) + 1


def _check_lengths(df: pd.DataFrame, columns: list[str], *, source: Path) -> None:
    """Refuse any cell longer than :data:`MAX_TEXT_CHARS` (a broken or hostile file)."""
    for column in columns:
        series = df[column]
        if isinstance(series.dtype, pd.StringDtype):
            lengths = series.str.len().fillna(0)
        else:
            lengths = series.map(lambda v: len(v) if isinstance(v, str) else 0)
        too_long = lengths > MAX_TEXT_CHARS
        if too_long.any():
            row = _first_row(too_long)
            raise DataError(
                f"{source}:{row}: {column}: {int(lengths.iloc[row - 1])} characters, more than "
                f"the {MAX_TEXT_CHARS} one value may hold"
            )


# --------------------------------------------------------------------------- readers


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


def _optional_user_ids(frame: pd.DataFrame) -> pd.Series | None:
    """A raw ``user_id`` column when the source has one (hashed later, never written)."""
    if "user_id" not in frame.columns:
        return None
    ids = frame["user_id"].reset_index(drop=True)
    return ids.astype("object").where(ids.notna(), None)


def _load_esci(src: Path) -> pd.DataFrame:
    folder = src if src.is_dir() else src.parent
    examples_path = src if src.is_file() else folder / ESCI_EXAMPLES_FILE
    products_path = folder / ESCI_PRODUCTS_FILE
    examples = read_parquet_frame(examples_path)
    _require_columns(
        examples, ["query_id", "query", "product_id", "esci_label"], source=examples_path
    )
    products = read_parquet_frame(products_path)
    _require_columns(products, ["product_id", "product_title"], source=products_path)
    text_columns = ["query", *(c for c in ("user_id",) if c in examples.columns)]
    _check_lengths(examples, text_columns, source=examples_path)
    product_text = [
        c
        for c in (
            "product_title",
            "product_description",
            "product_bullet_point",
            "product_brand",
            "product_color",
        )
        if c in products.columns
    ]
    _check_lengths(products, product_text, source=products_path)

    labels = examples["esci_label"].astype("str").str.strip()
    bad = ~labels.isin(list(ESCI_RELEVANCE))
    if bad.any():
        row = _first_row(bad)
        raise DataError(
            f"{examples_path}:{row}: esci_label: must be one of E, S, C, I, "
            f"got {short_repr(examples['esci_label'].iloc[row - 1])}"
        )
    keys = ["product_id", "product_locale"]
    if not all(k in examples.columns and k in products.columns for k in keys):
        keys = ["product_id"]
    for key in keys:  # join on text, whatever types the two files used
        examples[key] = examples[key].astype("str")
        products[key] = products[key].astype("str")
    products = products.drop_duplicates(subset=keys)
    merged = examples.merge(products, on=keys, how="left", suffixes=("", "_product"))
    missing = merged["product_title"].isna()
    if missing.any():
        row = _first_row(missing)
        raise DataError(
            f"{examples_path}:{row}: product_id: {short_repr(merged['product_id'].iloc[row - 1])} "
            f"not in {products_path.name}"
        )

    def column(name: str) -> pd.Series:
        return merged[name] if name in merged.columns else pd.Series([""] * len(merged))

    description = _text_column(column("product_description"), max_words=MAX_DESCRIPTION_WORDS)
    bullets = _text_column(column("product_bullet_point"), max_words=MAX_DESCRIPTION_WORDS)
    out = pd.DataFrame(
        {
            "query_id": merged["query_id"].astype("str").to_numpy(),
            "query": _text_column(merged["query"]).to_numpy(),
            "product_id": merged["product_id"].astype("str").to_numpy(),
            "product_title": _text_column(
                merged["product_title"], max_words=MAX_DESCRIPTION_WORDS
            ).to_numpy(),
            "relevance": labels.map(ESCI_RELEVANCE).astype("int64").to_numpy(),
            "brand": _text_column(column("product_brand")).to_numpy(),
            "colour": _text_column(column("product_color")).to_numpy(),
            "description": description.where(description.ne(""), bullets).to_numpy(),
        }
    )
    out["label"] = (out["relevance"] >= 2).astype("int64")
    user_ids = _optional_user_ids(merged)
    if user_ids is not None:
        out["user_id"] = user_ids.to_numpy()
    return out


def _wands_features(value: object) -> dict[str, str]:
    """Colour and material from WANDS ``product_features`` ("key:value|key:value")."""
    found: dict[str, str] = {}
    text = value if isinstance(value, str) else ""
    for item in re.sub(_SPACE_RE, " ", text).split("|"):
        key, sep, val = item.partition(":")
        key, val = key.strip().lower(), val.strip()
        if not sep or not val:
            continue
        if "color" in key or "colour" in key:
            found.setdefault("colour", val)
        elif "material" in key:
            found.setdefault("material", val)
    return found


def _load_wands(src: Path, *, encoding: str | None) -> pd.DataFrame:
    if not src.is_dir():
        raise DataError(
            f"{src}: file: WANDS import needs the folder holding {', '.join(WANDS_FILES)}"
        )
    queries = _read_delimited(src / "query.csv", sep="\t", encoding=encoding)
    products = _read_delimited(src / "product.csv", sep="\t", encoding=encoding)
    labels = _read_delimited(src / "label.csv", sep="\t", encoding=encoding)
    _require_columns(queries, ["query_id", "query"], source=src / "query.csv")
    _require_columns(products, ["product_id", "product_name"], source=src / "product.csv")
    _require_columns(labels, ["query_id", "product_id", "label"], source=src / "label.csv")

    grades = labels["label"].str.strip()
    bad = ~grades.isin(list(WANDS_RELEVANCE))
    if bad.any():
        row = _first_row(bad)
        raise DataError(
            f"{src / 'label.csv'}:{row}: label: must be Exact, Partial or Irrelevant, "
            f"got {short_repr(labels['label'].iloc[row - 1])}"
        )
    queries = queries.drop_duplicates(subset=["query_id"])
    products = products.drop_duplicates(subset=["product_id"])
    merged = labels.merge(queries[["query_id", "query"]], on="query_id", how="left")
    merged = merged.merge(products, on="product_id", how="left", suffixes=("", "_product"))
    for column, file in (("query", "query.csv"), ("product_name", "product.csv")):
        missing = merged[column].isna()
        if missing.any():
            row = _first_row(missing)
            key = "query_id" if column == "query" else "product_id"
            raise DataError(
                f"{src / 'label.csv'}:{row}: {key}: {short_repr(merged[key].iloc[row - 1])} "
                f"not in {file}"
            )

    features = (
        merged["product_features"].map(_wands_features)
        if "product_features" in merged.columns
        else pd.Series([{}] * len(merged))
    )
    empty = pd.Series([""] * len(merged), index=merged.index)
    out = pd.DataFrame(
        {
            "query_id": merged["query_id"].astype("str").to_numpy(),
            "query": _text_column(merged["query"]).to_numpy(),
            "product_id": merged["product_id"].astype("str").to_numpy(),
            "product_title": _text_column(merged["product_name"]).to_numpy(),
            "relevance": grades.map(WANDS_RELEVANCE).astype("int64").to_numpy(),
            "colour": [f.get("colour", "") for f in features],
            "category": _text_column(merged.get("product_class", empty)).to_numpy(),
            "material": [f.get("material", "") for f in features],
            "description": _text_column(
                merged.get("product_description", empty), max_words=MAX_DESCRIPTION_WORDS
            ).to_numpy(),
        }
    )
    out["label"] = (out["relevance"] >= 2).astype("int64")
    user_ids = _optional_user_ids(merged)
    if user_ids is not None:
        out["user_id"] = user_ids.to_numpy()
    return out


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


# --------------------------------------------------------------------------- assembly


def _compose_product_texts(out: pd.DataFrame) -> pd.Series:
    """:func:`~ecrec.data.schema.compose_product_text` for every row, vectorised."""
    composed = pd.Series("", index=out.index, dtype="str")
    for name in PRODUCT_FIELDS:
        if name not in out.columns:
            continue
        value = out[name].astype("object").where(out[name].notna(), "").astype("str")
        part = (f"{name}: " + value).where(value.ne(""), "")
        joined = composed + " | " + part
        composed = joined.where(composed.ne("") & part.ne(""), composed + part)
    return composed


def _finish_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Fill optional-but-derivable fields and order columns as the synthesizer does."""
    out = df.copy()
    composed = _compose_product_texts(out)
    composed = composed.where(composed.ne(""), out["product_title"].astype("str"))
    if "product_text" in out.columns:
        current = out["product_text"].astype("str")
        out["product_text"] = current.where(current.str.strip().ne(""), composed)
    else:
        out["product_text"] = composed
    if "user_segment" not in out.columns:
        out["user_segment"] = pd.Series("unknown", index=out.index, dtype="str")
    else:
        segment = out["user_segment"].astype("str")
        out["user_segment"] = segment.where(segment.str.strip().ne(""), "unknown")
    for name in PRODUCT_FIELDS:
        if name in out.columns:
            out[name] = out[name].replace("", None).astype("str")
    ordered = [c for c in COLUMN_ORDER if c in out.columns]
    if "user_id" in out.columns:
        ordered.append("user_id")
    return out[ordered]


def _hold_out(
    shards: dict[str, pd.DataFrame], fraction: float, seed: int
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Move ``fraction`` of each merchant's queries (never its last one) to validation."""
    rng = np.random.default_rng([seed, 1])
    kept: dict[str, pd.DataFrame] = {}
    held: list[pd.DataFrame] = []
    for merchant_id, df in sorted(shards.items()):
        qids = pd.unique(df["query_id"])
        n_hold = min(len(qids) - 1, round(len(qids) * fraction)) if fraction > 0 else 0
        if fraction > 0 and n_hold == 0 and len(qids) >= 2:
            n_hold = 1
        chosen = set(rng.choice(qids, size=n_hold, replace=False).tolist()) if n_hold else set()
        mask = df["query_id"].isin(chosen)
        kept[merchant_id] = df[~mask].reset_index(drop=True)
        held.append(df[mask])
    validation = pd.concat(held, ignore_index=True) if held else pd.DataFrame()
    return kept, validation


def _check_duplicates(df: pd.DataFrame, keys: list[str], *, source: Path) -> None:
    """Refuse a product listed twice for one query: it would be two rows of one ranking slot."""
    frame = df[keys].astype("str").reset_index(drop=True)
    dup = frame.duplicated(keep="first")
    if not dup.any():
        return
    row = _first_row(dup) - 1
    first = int((frame.iloc[:row] == frame.iloc[row]).all(axis=1).to_numpy().argmax())
    raise DataError(
        f"{source}:{row + 1}: product_id: {short_repr(frame.at[row, 'product_id'])} listed again "
        f"for query_id {short_repr(frame.at[row, 'query_id'])} (first at row {first + 1})"
    )


def _first_problem(problems: list[Problem]) -> str:
    more = len(problems) - 1
    return f"{problems[0]} (and {more} more)" if more else str(problems[0])


def _check_source_rows(df: pd.DataFrame, *, partition_by: PartitionBy, source: Path) -> None:
    """Validate rows before partitioning, so errors carry the source file's row numbers.

    Merchant columns that the partition will assign are filled with placeholders
    here; with ``partition_by="merchant"`` the data's own ``merchant_id`` is
    checked, including that it is safe as part of a file name.
    """
    probe = df.copy()
    if partition_by == "dirichlet":
        probe["merchant_id"] = "unassigned"
    elif "merchant_id" not in probe.columns:
        raise DataError(
            f"{source}: merchant_id: not in the data; map a column with --map COLUMN=merchant_id "
            "or use --partition-by dirichlet"
        )
    probe["merchant_tier"] = "small"
    problems = validate_frame(probe, source=str(source))
    if problems:
        raise DataError(_first_problem(problems))


def _check(options: ImportOptions) -> None:
    if options.partition_by not in ("merchant", "dirichlet"):
        raise ConfigError(
            f"partition_by must be 'merchant' or 'dirichlet', got {options.partition_by!r}"
        )
    if not 0 <= options.validation_fraction < 1:
        raise ConfigError(
            f"validation_fraction must be at least 0 and below 1, got {options.validation_fraction}"
        )
    _check_encoding(options.encoding)


def import_dataset(
    fmt: str,
    src: str | os.PathLike[str],
    *,
    mapping: Mapping[str, str] | None = None,
    partition_by: PartitionBy = "dirichlet",
    n_merchants: int = 4,
    alpha: float = 0.5,
    seed: int = 0,
    validation_fraction: float = 0.1,
    dirichlet_by: DirichletBy = "query",
    hash_key: bytes | None = None,
    encoding: str | None = None,
) -> Marketplace:
    """Read ``src`` in format ``fmt`` and return a desensitised, partitioned marketplace.

    A raw ``user_id`` column (ESCI/WANDS ``user_id``, or ``--map COL=user_id``)
    is replaced by its HMAC under ``hash_key`` as ``user_id_hash``; data with
    user ids and no key is refused. The result passes
    :func:`~ecrec.data.desensitize.check_desensitised`.
    """
    options = ImportOptions(
        partition_by=partition_by,
        n_merchants=n_merchants,
        alpha=alpha,
        seed=seed,
        validation_fraction=validation_fraction,
        dirichlet_by=dirichlet_by,
        hash_key=hash_key,
        encoding=encoding,
    )
    _check(options)
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: file: no such file or folder")
    if mapping and fmt in ("esci", "wands"):
        raise ConfigError(f"--map applies to csv and jsonl imports, not {fmt}")
    if fmt == "esci":
        df = _load_esci(src)
        rows_from = src if src.is_file() else src / ESCI_EXAMPLES_FILE
    elif fmt == "wands":
        df = _load_wands(src, encoding=options.encoding)
        rows_from = src / "label.csv"
    elif fmt in ("csv", "jsonl"):
        if not src.is_file():
            raise DataError(f"{src}: file: {fmt} import needs a file, not a folder")
        df = _load_plain(src, fmt, mapping or {}, encoding=options.encoding)
        rows_from = src
    else:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if df.empty:
        raise DataError(f"{rows_from}: file: no rows to import")
    has_user_ids = "user_id" in df.columns
    if has_user_ids and options.hash_key is None:
        raise ConfigError(
            f"{rows_from}: user_id: the data has shopper ids, so a secret hash key is needed "
            "(ecrec data import makes one in --hash-key-file)"
        )
    keys = ["query_id", "product_id"]
    if options.partition_by == "merchant" and "merchant_id" in df.columns:
        keys.append("merchant_id")
    _check_duplicates(df, keys, source=rows_from)

    df = desensitize_frame(_finish_columns(df), key=options.hash_key)
    _check_source_rows(df, partition_by=options.partition_by, source=rows_from)
    if options.partition_by == "merchant":
        shards = partition_by_merchant(df, source=str(rows_from))
    else:
        shards = partition_dirichlet(
            df,
            n_merchants=options.n_merchants,
            alpha=options.alpha,
            seed=options.seed,
            by=options.dirichlet_by,
        )
    shards = {m: s[[c for c in COLUMN_ORDER if c in s.columns]] for m, s in shards.items()}
    merchants, validation = _hold_out(shards, options.validation_fraction, options.seed)
    if validation.empty:
        validation = next(iter(merchants.values())).iloc[:0]

    frames = {**{f"merchant {m}": f for m, f in merchants.items()}, "validation": validation}
    for name, frame in frames.items():  # bug guards: rows were checked above
        source = f"{src} ({name})"
        problems = validate_frame(frame, source=source)
        if problems:
            raise DataError(_first_problem(problems))
        check_desensitised(frame, source=source)

    meta = {
        "source": fmt,
        "source_path": str(src),
        "import": {
            "mapping": dict(mapping or {}),
            "partition_by": options.partition_by,
            "dirichlet_by": options.dirichlet_by,
            "merchants": options.n_merchants,
            "alpha": options.alpha,
            "seed": options.seed,
            "validation_fraction": options.validation_fraction,
            "encoding": options.encoding,
        },
        "seed": options.seed,
        "user_id_hash": (
            {"method": "HMAC-SHA256, 128 bits", "key_id": hash_key_id(options.hash_key)}
            if has_user_ids and options.hash_key is not None
            else None
        ),
        "relevance_rule": {
            "esci": "E=3, S=2, C=1, I=0; label = relevance >= 2",
            "wands": "Exact=3, Partial=1, Irrelevant=0; label = 1 for Exact",
        }.get(fmt, "as given in the source file"),
    }
    return Marketplace(merchants=merchants, validation=validation.reset_index(drop=True), meta=meta)
