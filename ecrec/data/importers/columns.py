"""Column helpers every importer shares: clean text, stable ids, required columns, lengths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from ecrec.data.schema import MAX_TEXT_CHARS
from ecrec.errors import DataError

#: Words kept from a long description, so product_text fits the ranker's 64 tokens.
MAX_DESCRIPTION_WORDS = 30
_TAG_RE = r"<[^<>]{0,1000}>"
_SPACE_RE = r"\s+"


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


def _optional_user_ids(frame: pd.DataFrame) -> pd.Series | None:
    """A raw ``user_id`` column when the source has one (hashed later, never written)."""
    if "user_id" not in frame.columns:
        return None
    ids = frame["user_id"].reset_index(drop=True)
    return ids.astype("object").where(ids.notna(), None)
