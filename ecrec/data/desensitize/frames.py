"""Frames: desensitise every text column and user id, and the node-side re-check for plain PII."""

from __future__ import annotations

import pandas as pd

from ecrec.data.desensitize.hashing import USER_ID_HASH_CHARS, USER_ID_HASH_PATTERN, _hash_series
from ecrec.data.desensitize.masking import _mask_suspect, _suspects, _unique_text, pii_kinds
from ecrec.data.schema import PRODUCT_FIELDS, Problem, row_problems
from ecrec.errors import ConfigError, DataError

#: Free-text columns that :func:`desensitize_frame` masks and :func:`find_plain_pii` checks.
TEXT_COLUMNS: tuple[str, ...] = (
    "query",
    "product_title",
    "product_text",
    *PRODUCT_FIELDS,
    "user_segment",
)


def _mask_series(values: pd.Series) -> pd.Series:
    """Mask each distinct value once, and only those the pre-filter flags."""
    unique = _unique_text(values)
    mapping = {
        value: masked
        for value, detectors in zip(unique, _suspects(unique), strict=True)
        if detectors and (masked := _mask_suspect(value, detectors)) != value
    }
    return values.replace(mapping) if mapping else values


def desensitize_frame(df: pd.DataFrame, *, key: bytes | None = None) -> pd.DataFrame:
    """A copy of ``df`` with text masked and ``user_id`` replaced by its keyed ``user_id_hash``.

    ``key`` is required when ``df`` has a ``user_id`` column (see
    :func:`new_hash_key`); an existing ``user_id_hash`` is replaced then.
    """
    out = df.copy()
    for column in TEXT_COLUMNS:
        if column in out.columns:
            out[column] = _mask_series(out[column])
    if "user_id" in out.columns:
        if key is None:
            raise ConfigError("the data has a user_id column: a hash key is needed to hash it")
        hashed = _hash_series(out["user_id"], key)
        position = int(out.columns.get_loc("user_id"))
        out = out.drop(columns=[c for c in ("user_id", "user_id_hash") if c in out.columns])
        out.insert(min(position, len(out.columns)), "user_id_hash", hashed)
    return out


def find_plain_pii(frame: pd.DataFrame, *, source: str) -> list[Problem]:
    """Every text cell that still holds PII, and raw user ids, as problems (no PII echoed).

    The same detectors as :func:`mask_text`, so the output of
    :func:`desensitize_frame` never has a problem here.
    """
    problems: list[Problem] = []
    if "user_id" in frame.columns:
        problems.append(
            Problem(source, None, "user_id", "raw shopper ids; only user_id_hash may be stored")
        )
    for column in TEXT_COLUMNS:
        if column not in frame.columns or frame.columns.duplicated().any():
            continue
        values = frame[column].reset_index(drop=True)
        unique = _unique_text(values)
        kind_of = {
            value: kinds[0]
            for value, detectors in zip(unique, _suspects(unique), strict=True)
            if detectors and (kinds := pii_kinds(value, detectors))
        }
        if not kind_of:
            continue
        hits = values[values.isin(list(kind_of))]
        by_kind: dict[str, list[int]] = {}
        for position, value in hits.items():
            by_kind.setdefault(kind_of[value], []).append(int(position))
        for kind, rows in by_kind.items():
            problems += row_problems(
                source, column, rows, f"{kind} left in text (desensitise with `ecrec data import`)"
            )
    if "user_id_hash" in frame.columns and not frame.columns.duplicated().any():
        hashes = frame["user_id_hash"].reset_index(drop=True)
        present = hashes[hashes.notna()]
        text = present.astype("str")
        bad = present[~text.str.fullmatch(USER_ID_HASH_PATTERN.pattern)]
        problems += row_problems(
            source,
            "user_id_hash",
            [int(p) for p in bad.index],
            f"not a keyed hash ({USER_ID_HASH_CHARS} lowercase hex characters expected)",
        )
    return problems


def check_desensitised(frame: pd.DataFrame, *, source: str) -> None:
    """Raise :class:`DataError` naming file, row, field and kind if ``frame`` holds plain PII.

    A merchant node calls this on load: data that skipped ``ecrec data
    import`` (or was edited since) must not reach training.
    """
    problems = find_plain_pii(frame, source=source)
    if problems:
        more = len(problems) - 1
        suffix = f" (and {more} more; run `ecrec data validate` to list them)" if more else ""
        raise DataError(f"{problems[0]}{suffix}")
