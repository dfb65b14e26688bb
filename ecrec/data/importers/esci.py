"""Amazon Shopping Queries (ESCI): examples joined with products; E/S/C/I become 3/2/1/0."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ecrec.data.importers.columns import (
    MAX_DESCRIPTION_WORDS,
    _check_lengths,
    _first_row,
    _optional_user_ids,
    _require_columns,
    _text_column,
)
from ecrec.data.io import read_parquet_frame
from ecrec.data.schema import short_repr
from ecrec.errors import DataError

ESCI_EXAMPLES_FILE = "shopping_queries_dataset_examples.parquet"
ESCI_PRODUCTS_FILE = "shopping_queries_dataset_products.parquet"
ESCI_RELEVANCE: dict[str, int] = {"E": 3, "S": 2, "C": 1, "I": 0}


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
