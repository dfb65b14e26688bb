"""From loaded rows to a marketplace: derived columns, duplicate and row checks,
desensitisation, partition into merchants and the held-out validation shard."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ecrec.data.desensitize import check_desensitised, desensitize_frame, hash_key_id
from ecrec.data.importers.columns import _first_row
from ecrec.data.importers.esci import ESCI_EXAMPLES_FILE, _load_esci
from ecrec.data.importers.plain import _load_plain
from ecrec.data.importers.readers import _check_encoding
from ecrec.data.importers.wands import _load_wands
from ecrec.data.io import validate_frame
from ecrec.data.partition import DirichletBy, partition_by_merchant, partition_dirichlet
from ecrec.data.schema import COLUMN_ORDER, PRODUCT_FIELDS, Problem, short_repr
from ecrec.data.synth import Marketplace
from ecrec.errors import ConfigError, DataError

FORMATS: tuple[str, ...] = ("esci", "wands", "csv", "jsonl")
PartitionBy = Literal["merchant", "dirichlet"]


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
