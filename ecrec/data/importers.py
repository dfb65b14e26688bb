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

import csv
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ecrec.data.desensitize import desensitize_frame
from ecrec.data.io import validate_frame
from ecrec.data.partition import DirichletBy, partition_by_merchant, partition_dirichlet
from ecrec.data.schema import (
    COLUMN_ORDER,
    OPTIONAL_COLUMNS,
    PRODUCT_FIELDS,
    REQUIRED_COLUMNS,
    Problem,
    compose_product_text,
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

_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class ImportOptions:
    """How to split and desensitise an imported table."""

    partition_by: PartitionBy = "dirichlet"
    n_merchants: int = 4
    alpha: float = 0.5
    seed: int = 0
    salt: str = "ecrec-import"
    validation_fraction: float = 0.1
    dirichlet_by: DirichletBy = "query"


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


def _clean_text(value: object, *, max_words: int | None = None) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    text = _SPACE_RE.sub(" ", _TAG_RE.sub(" ", str(value))).strip()
    if max_words is not None:
        words = text.split(" ")
        if len(words) > max_words:
            text = " ".join(words[:max_words]) + " ..."
    return text


def _stable_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def _require_columns(df: pd.DataFrame, columns: list[str], *, source: Path) -> None:
    for column in columns:
        if column not in df.columns:
            raise DataError(f"{source}: {column}: required column is missing")


def _text_column(series: pd.Series, *, max_words: int | None = None) -> pd.Series:
    return series.map(lambda v: _clean_text(v, max_words=max_words)).astype("str")


# --------------------------------------------------------------------------- readers


def _read_parquet_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file: not found")
    try:
        return pd.read_parquet(path)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: file: not a readable parquet file ({reason})") from err


def _read_delimited(path: Path, *, sep: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file: not found")
    try:
        return pd.read_csv(
            path, sep=sep, dtype="str", keep_default_na=False, quoting=csv.QUOTE_MINIMAL
        )
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: file: cannot parse ({reason})") from err


def _read_jsonl(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file: not found")
    records: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{line_no}: line: not valid JSON ({err.msg})") from err
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{line_no}: line: expected a JSON object")
                records.append(record)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: file: not UTF-8 text") from err
    if not records:
        raise DataError(f"{path}: file: no records")
    return pd.DataFrame.from_records(records)


def _load_esci(src: Path) -> pd.DataFrame:
    folder = src if src.is_dir() else src.parent
    examples_path = src if src.is_file() else folder / ESCI_EXAMPLES_FILE
    products_path = folder / ESCI_PRODUCTS_FILE
    examples = _read_parquet_file(examples_path)
    _require_columns(
        examples, ["query_id", "query", "product_id", "esci_label"], source=examples_path
    )
    products = _read_parquet_file(products_path)
    _require_columns(products, ["product_id", "product_title"], source=products_path)

    labels = examples["esci_label"].astype("str").str.strip()
    bad = ~labels.isin(list(ESCI_RELEVANCE))
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(
            f"{examples_path}:{row + 1}: esci_label: must be one of E, S, C, I, "
            f"got {examples['esci_label'].iloc[row]!r}"
        )
    keys = ["product_id", "product_locale"]
    if not all(k in examples.columns and k in products.columns for k in keys):
        keys = ["product_id"]
    products = products.drop_duplicates(subset=keys)
    merged = examples.merge(products, on=keys, how="left", suffixes=("", "_product"))
    missing = merged["product_title"].isna()
    if missing.any():
        row = int(missing.to_numpy().argmax())
        raise DataError(
            f"{examples_path}:{row + 1}: product_id: {merged['product_id'].iloc[row]!r} "
            f"not in {products_path.name}"
        )

    def column(name: str) -> pd.Series:
        return merged[name] if name in merged.columns else pd.Series([""] * len(merged))

    description = column("product_description").where(
        column("product_description").map(lambda v: bool(_clean_text(v))),
        column("product_bullet_point"),
    )
    out = pd.DataFrame(
        {
            "query_id": merged["query_id"].astype("str"),
            "query": _text_column(merged["query"]),
            "product_id": merged["product_id"].astype("str"),
            "product_title": _text_column(merged["product_title"], max_words=MAX_DESCRIPTION_WORDS),
            "relevance": labels.map(ESCI_RELEVANCE).astype("int64").to_numpy(),
            "brand": _text_column(column("product_brand")).to_numpy(),
            "colour": _text_column(column("product_color")).to_numpy(),
            "description": _text_column(description, max_words=MAX_DESCRIPTION_WORDS).to_numpy(),
        }
    )
    out["label"] = (out["relevance"] >= 2).astype("int64")
    return out


def _wands_features(value: object) -> dict[str, str]:
    """Colour and material from WANDS ``product_features`` ("key:value|key:value")."""
    found: dict[str, str] = {}
    for item in _clean_text(value).split("|"):
        key, sep, val = item.partition(":")
        key, val = key.strip().lower(), val.strip()
        if not sep or not val:
            continue
        if "color" in key or "colour" in key:
            found.setdefault("colour", val)
        elif "material" in key:
            found.setdefault("material", val)
    return found


def _load_wands(src: Path) -> pd.DataFrame:
    if not src.is_dir():
        raise DataError(
            f"{src}: file: WANDS import needs the folder holding {', '.join(WANDS_FILES)}"
        )
    queries = _read_delimited(src / "query.csv", sep="\t")
    products = _read_delimited(src / "product.csv", sep="\t")
    labels = _read_delimited(src / "label.csv", sep="\t")
    _require_columns(queries, ["query_id", "query"], source=src / "query.csv")
    _require_columns(products, ["product_id", "product_name"], source=src / "product.csv")
    _require_columns(labels, ["query_id", "product_id", "label"], source=src / "label.csv")

    grades = labels["label"].str.strip()
    bad = ~grades.isin(list(WANDS_RELEVANCE))
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(
            f"{src / 'label.csv'}:{row + 1}: label: must be Exact, Partial or Irrelevant, "
            f"got {labels['label'].iloc[row]!r}"
        )
    merged = labels.merge(queries[["query_id", "query"]], on="query_id", how="left")
    merged = merged.merge(products, on="product_id", how="left", suffixes=("", "_product"))
    for column, file in (("query", "query.csv"), ("product_name", "product.csv")):
        missing = merged[column].isna()
        if missing.any():
            row = int(missing.to_numpy().argmax())
            key = "query_id" if column == "query" else "product_id"
            raise DataError(
                f"{src / 'label.csv'}:{row + 1}: {key}: {merged[key].iloc[row]!r} not in {file}"
            )

    features = (
        merged["product_features"].map(_wands_features)
        if "product_features" in merged.columns
        else pd.Series([{}] * len(merged))
    )
    relevance = grades.map(WANDS_RELEVANCE).astype("int64").to_numpy()
    category = merged["product_class"] if "product_class" in merged.columns else ""
    description = merged.get("product_description", pd.Series([""] * len(merged)))
    out = pd.DataFrame(
        {
            "query_id": merged["query_id"].astype("str"),
            "query": _text_column(merged["query"]),
            "product_id": merged["product_id"].astype("str"),
            "product_title": _text_column(merged["product_name"]),
            "relevance": relevance,
            "colour": [f.get("colour", "") for f in features],
            "category": _text_column(pd.Series(category, index=merged.index)).to_numpy(),
            "material": [f.get("material", "") for f in features],
            "description": _text_column(description, max_words=MAX_DESCRIPTION_WORDS).to_numpy(),
        }
    )
    out["label"] = (out["relevance"] >= 2).astype("int64")
    return out


def _coerce_int(series: pd.Series, *, name: str, source: Path, allow_bool: bool) -> pd.Series:
    truthy = {"true": 1, "false": 0, "yes": 1, "no": 0}
    values: list[int | None] = []
    for pos, value in enumerate(series.tolist()):
        if value is None or (not isinstance(value, str) and pd.isna(value)) or value == "":
            raise DataError(f"{source}:{pos + 1}: {name}: empty value")
        if isinstance(value, bool):
            if not allow_bool:
                raise DataError(f"{source}:{pos + 1}: {name}: expected an integer, got {value}")
            values.append(int(value))
            continue
        text = str(value).strip()
        if allow_bool and text.lower() in truthy:
            values.append(truthy[text.lower()])
            continue
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if not number.is_integer():
            raise DataError(f"{source}:{pos + 1}: {name}: expected an integer, got {value!r}")
        values.append(int(number))
    return pd.Series(values, index=series.index, dtype="int64")


def _load_plain(src: Path, fmt: str, mapping: Mapping[str, str]) -> pd.DataFrame:
    if fmt == "csv":
        sep = "\t" if src.suffix.lower() in (".tsv", ".tab") else ","
        raw = _read_delimited(src, sep=sep)
    else:
        raw = _read_jsonl(src)
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
    df = renamed[[c for c in renamed.columns if c in MAPPABLE_FIELDS]].copy()

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
    for name in ("relevance", "position"):
        if name in df.columns:
            df[name] = _coerce_int(df[name], name=name, source=src, allow_bool=False)
    if "label" in df.columns:
        df["label"] = _coerce_int(df["label"], name="label", source=src, allow_bool=True)
    else:
        df["label"] = (df["relevance"] >= 2).astype("int64")

    text_fields = [
        c
        for c in df.columns
        if c in MAPPABLE_FIELDS and c not in ("label", "relevance", "position")
    ]
    for name in text_fields:
        df[name] = df[name].map(
            lambda v: "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
        )
        df[name] = df[name].astype("str")
    for name in ("query", "product_title", "product_id"):
        empty = df[name].str.strip().eq("")
        if empty.any():
            raise DataError(f"{src}:{int(empty.to_numpy().argmax()) + 1}: {name}: empty value")
    if "query_id" not in df.columns:
        df["query_id"] = df["query"].map(lambda q: _stable_id("q", q.strip().lower()))
    return df


# --------------------------------------------------------------------------- assembly


def _finish_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Fill optional-but-derivable fields and order columns as the synthesizer does."""
    out = df.copy()
    n = len(out)
    if "product_text" not in out.columns or out["product_text"].str.strip().eq("").any():
        fields_present = [f for f in PRODUCT_FIELDS if f in out.columns]
        composed = (
            [
                compose_product_text({f: row[i] for i, f in enumerate(fields_present)})
                for row in zip(*(out[f].tolist() for f in fields_present), strict=True)
            ]
            if fields_present
            else [""] * n
        )
        composed = [c or t for c, t in zip(composed, out["product_title"].tolist(), strict=True)]
        if "product_text" in out.columns:
            current = out["product_text"].tolist()
            composed = [c if c.strip() else new for c, new in zip(current, composed, strict=True)]
        out["product_text"] = pd.Series(composed, index=out.index, dtype="str")
    if "user_segment" not in out.columns:
        out["user_segment"] = pd.Series(["unknown"] * n, index=out.index, dtype="str")
    else:
        out["user_segment"] = out["user_segment"].where(
            out["user_segment"].str.strip().ne(""), "unknown"
        )
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
    row = int(dup.to_numpy().argmax())
    first = int((frame.iloc[:row] == frame.iloc[row]).all(axis=1).to_numpy().argmax())
    raise DataError(
        f"{source}:{row + 1}: product_id: {frame.at[row, 'product_id']!r} listed again for "
        f"query_id {frame.at[row, 'query_id']!r} (first at row {first + 1})"
    )


def _first_problem(problems: list[Problem]) -> str:
    more = len(problems) - 1
    return f"{problems[0]} (and {more} more)" if more else str(problems[0])


def _check_source_rows(df: pd.DataFrame, *, partition_by: PartitionBy, source: Path) -> None:
    """Validate rows before partitioning, so errors carry the source file's row numbers.

    Merchant columns that the partition will assign are filled with placeholders
    here; with ``partition_by="merchant"`` the data's own ``merchant_id`` is checked.
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
    if not options.salt:
        raise ConfigError("salt must not be empty")


def import_dataset(
    fmt: str,
    src: str | os.PathLike[str],
    *,
    mapping: Mapping[str, str] | None = None,
    partition_by: PartitionBy = "dirichlet",
    n_merchants: int = 4,
    alpha: float = 0.5,
    seed: int = 0,
    salt: str = "ecrec-import",
    validation_fraction: float = 0.1,
    dirichlet_by: DirichletBy = "query",
) -> Marketplace:
    """Read ``src`` in format ``fmt`` and return a desensitised, partitioned marketplace."""
    options = ImportOptions(
        partition_by=partition_by,
        n_merchants=n_merchants,
        alpha=alpha,
        seed=seed,
        salt=salt,
        validation_fraction=validation_fraction,
        dirichlet_by=dirichlet_by,
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
        df = _load_wands(src)
        rows_from = src / "label.csv"
    elif fmt in ("csv", "jsonl"):
        if not src.is_file():
            raise DataError(f"{src}: file: {fmt} import needs a file, not a folder")
        df = _load_plain(src, fmt, mapping or {})
        rows_from = src
    else:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if df.empty:
        raise DataError(f"{rows_from}: file: no rows to import")
    keys = ["query_id", "product_id"]
    if options.partition_by == "merchant" and "merchant_id" in df.columns:
        keys.append("merchant_id")
    _check_duplicates(df, keys, source=rows_from)

    df = desensitize_frame(_finish_columns(df), salt=options.salt)
    _check_source_rows(df, partition_by=options.partition_by, source=rows_from)
    if options.partition_by == "merchant":
        shards = partition_by_merchant(df)
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

    for merchant_id, frame in merchants.items():  # a bug guard: rows were checked above
        problems = validate_frame(frame, source=f"{src} (merchant {merchant_id})")
        if problems:
            raise DataError(_first_problem(problems))

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
        },
        "seed": options.seed,
        "relevance_rule": {
            "esci": "E=3, S=2, C=1, I=0; label = relevance >= 2",
            "wands": "Exact=3, Partial=1, Irrelevant=0; label = 1 for Exact",
        }.get(fmt, "as given in the source file"),
    }
    return Marketplace(merchants=merchants, validation=validation.reset_index(drop=True), meta=meta)
