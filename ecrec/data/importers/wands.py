"""Wayfair WANDS: query, product and label files; Exact/Partial/Irrelevant become 3/1/0."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ecrec.data.importers.columns import (
    _SPACE_RE,
    MAX_DESCRIPTION_WORDS,
    _first_row,
    _optional_user_ids,
    _require_columns,
    _text_column,
)
from ecrec.data.importers.readers import _read_delimited
from ecrec.data.schema import short_repr
from ecrec.errors import DataError

WANDS_FILES: tuple[str, ...] = ("query.csv", "product.csv", "label.csv")
WANDS_RELEVANCE: dict[str, int] = {"Exact": 3, "Partial": 1, "Irrelevant": 0}


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
