"""The marketplace: per-merchant frames, the validation shard, and its data folder."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ecrec.data.io import write_impressions
from ecrec.data.schema import MANIFEST_FILE, MERCHANT_FILE_PATTERN, VALIDATION_FILE
from ecrec.data.synth.rules import QueryIntent
from ecrec.errors import DataError


@dataclass
class Marketplace:
    """Per-merchant impression frames plus the server's pooled validation shard."""

    merchants: dict[str, pd.DataFrame]
    validation: pd.DataFrame
    #: Provenance written into ``manifest.json`` (config, source, rules).
    meta: dict[str, Any] = field(default_factory=dict)
    #: The hidden intent behind each synthetic ``query_id`` (empty for imported data).
    #: Kept in memory for tests and benchmarks; never written to disk.
    intents: dict[str, QueryIntent] = field(default_factory=dict)


def write_marketplace(
    marketplace: Marketplace, out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> list[Path]:
    """Write one parquet file per merchant, ``validation.parquet`` and ``manifest.json``.

    An existing marketplace in ``out_dir`` is never silently replaced: without
    ``overwrite`` it is an error; with it, stale merchant files from the old
    marketplace are removed so the folder describes exactly one marketplace.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    pattern = MERCHANT_FILE_PATTERN.format(merchant_id="*")
    existing = sorted(out.glob(pattern)) if out.exists() else []
    has_old = bool(existing) or (out / MANIFEST_FILE).exists() or (out / VALIDATION_FILE).exists()
    if has_old and not overwrite:
        raise DataError(
            f"{out}: already holds a marketplace; "
            "choose another folder or pass --force to replace it"
        )
    out.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    counts: dict[str, int] = {}
    tiers: dict[str, str] = {}
    for merchant_id, df in sorted(marketplace.merchants.items()):
        path = out / MERCHANT_FILE_PATTERN.format(merchant_id=merchant_id)
        write_impressions(df, path)
        written.append(path)
        counts[merchant_id] = len(df)
        if len(df):
            tiers[merchant_id] = str(df["merchant_tier"].iloc[0])
    for stale in existing:
        if stale not in written:
            stale.unlink()
    validation_path = out / VALIDATION_FILE
    write_impressions(marketplace.validation, validation_path)
    written.append(validation_path)

    manifest = {
        **marketplace.meta,
        "files": [p.name for p in written],
        "rows": {"merchants": counts, "validation": len(marketplace.validation)},
        "queries": {
            "merchants": {
                m: int(df["query_id"].nunique()) for m, df in sorted(marketplace.merchants.items())
            },
            "validation": int(marketplace.validation["query_id"].nunique())
            if "query_id" in marketplace.validation
            else 0,
        },
        "merchant_tiers": tiers,
    }
    manifest_path = out / MANIFEST_FILE
    tmp = manifest_path.with_name(f".{MANIFEST_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, manifest_path)
    written.append(manifest_path)
    return written
