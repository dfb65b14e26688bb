"""The contract check of a frame: :func:`validate_frame` lists *all* violations as
:class:`~ecrec.data.schema.Problem` values (``file:row: field: message``, rows 1-based)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ecrec.data.schema import (
    LABEL_VALUES,
    MAX_TEXT_CHARS,
    MERCHANT_TIERS,
    OPTIONAL_COLUMNS,
    RELEVANCE_RANGE,
    REQUIRED_COLUMNS,
    SAFE_NAME_PATTERN,
    SAFE_NAME_RULE,
    Problem,
    row_problems,
    short_repr,
)

_KINDS: dict[str, str] = {**REQUIRED_COLUMNS, **OPTIONAL_COLUMNS}


@dataclass
class ValidationReport:
    """What :func:`check_path` found: problems plus how much was checked."""

    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _check_string_column(
    df: pd.DataFrame, column: str, *, source: str, required: bool
) -> list[Problem]:
    series = df[column]
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        message = f"expected text, found a column of {series.dtype}"
        return [Problem(source, None, column, message)]
    if isinstance(series.dtype, pd.StringDtype):  # fast path: every value is text or missing
        missing = series.isna().to_numpy()
        blank = series.fillna("x").str.strip().eq("").to_numpy()
        empty = (missing | blank).nonzero()[0].tolist() if required else []
        lengths = series.str.len().fillna(0).to_numpy()
        long = {int(p): _too_long(int(lengths[p])) for p in (lengths > MAX_TEXT_CHARS).nonzero()[0]}
        return row_problems(source, column, empty, "empty value") + row_problems(
            source, column, long, long
        )
    empty: list[int] = []
    wrong: dict[int, str] = {}
    for pos, value in enumerate(series.tolist()):
        if _is_missing(value):
            if required:
                empty.append(pos)
        elif not isinstance(value, str):
            wrong[pos] = f"expected text, got {type(value).__name__} {short_repr(value)}"
        elif required and not value.strip():
            empty.append(pos)
        elif len(value) > MAX_TEXT_CHARS:
            wrong[pos] = _too_long(len(value))
    return row_problems(source, column, empty, "empty value") + row_problems(
        source, column, wrong, wrong
    )


def _too_long(length: int) -> str:
    return f"{length} characters, more than the {MAX_TEXT_CHARS} one value may hold"


def _unsafe_merchant_ids(df: pd.DataFrame, *, source: str) -> list[Problem]:
    """Merchant ids become file names, so only :data:`SAFE_NAME_PATTERN` ids are allowed."""
    ids = df["merchant_id"].reset_index(drop=True)
    if isinstance(ids.dtype, pd.StringDtype):  # fast path: text or missing
        text = ids.dropna()
    else:  # non-text values are reported by the type check
        text = ids[ids.map(lambda v: isinstance(v, str))].astype("str")
    text = text[text.str.strip().ne("")]  # empty values are reported as such
    bad = text[~text.str.fullmatch(SAFE_NAME_PATTERN)]
    messages = {
        int(p): f"{short_repr(v)} is not allowed as a merchant id ({SAFE_NAME_RULE})"
        for p, v in bad.items()
    }
    return row_problems(source, "merchant_id", messages, messages)


def _int_values(
    df: pd.DataFrame, column: str, *, source: str, required: bool
) -> tuple[list[Problem], pd.Series]:
    """Integer values indexed by 0-based row, plus problems for values that are not integers."""
    series = df[column].reset_index(drop=True)
    if pd.api.types.is_bool_dtype(series.dtype):
        problem = Problem(source, None, column, "expected integers, found a column of bool")
        return [problem], series[:0]
    if pd.api.types.is_integer_dtype(series.dtype):  # fast path
        missing = series.isna()
        problems = row_problems(
            source, column, missing[missing].index.tolist() if required else [], "empty value"
        )
        return problems, series[~missing].astype("int64")
    values: dict[int, int] = {}
    missing_rows: list[int] = []
    wrong: dict[int, str] = {}
    for pos, value in enumerate(series.tolist()):
        if _is_missing(value):
            if required:
                missing_rows.append(pos)
            continue
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            wrong[pos] = f"expected an integer, got {short_repr(value)}"
        elif not float(value).is_integer():
            wrong[pos] = f"expected an integer, got {value!r}"
        else:
            values[pos] = int(value)
    problems = row_problems(source, column, missing_rows, "empty value")
    problems += row_problems(source, column, wrong, wrong)
    return problems, pd.Series(values, dtype="int64")


def validate_frame(df: pd.DataFrame, *, source: str) -> list[Problem]:
    """Every way ``df`` breaks the data contract, as problems naming file, row and field."""
    problems: list[Problem] = []
    for column in REQUIRED_COLUMNS:
        if column not in df.columns:
            problems.append(Problem(source, None, column, "required column is missing"))
    if df.columns.duplicated().any():
        for column in df.columns[df.columns.duplicated()].unique():
            problems.append(Problem(source, None, str(column), "column appears more than once"))
        return problems

    for column, kind in _KINDS.items():
        if column not in df.columns:
            continue
        required = column in REQUIRED_COLUMNS
        if kind == "string":
            problems += _check_string_column(df, column, source=source, required=required)
            continue
        found, values = _int_values(df, column, source=source, required=required)
        problems += found
        if column == "label":
            bad = values[~values.isin(sorted(LABEL_VALUES))]
            problems += row_problems(
                source, column, bad.index, {p: f"must be 0 or 1, got {v}" for p, v in bad.items()}
            )
        elif column == "relevance":
            lo, hi = RELEVANCE_RANGE
            bad = values[(values < lo) | (values > hi)]
            problems += row_problems(
                source,
                column,
                bad.index,
                {p: f"must be between {lo} and {hi}, got {v}" for p, v in bad.items()},
            )
        elif column == "position":
            bad = values[values < 1]
            problems += row_problems(
                source,
                column,
                bad.index,
                {p: f"must be 1 or more, got {v}" for p, v in bad.items()},
            )

    if "merchant_id" in df.columns:
        problems += _unsafe_merchant_ids(df, source=source)

    if "merchant_tier" in df.columns:
        tiers = df["merchant_tier"].reset_index(drop=True)
        is_text = (
            tiers.notna()
            if isinstance(tiers.dtype, pd.StringDtype)
            else tiers.map(lambda v: isinstance(v, str)).astype(bool)
        )
        text = tiers[is_text].astype("str")
        bad_values = text[text.str.strip().ne("") & ~text.isin(sorted(MERCHANT_TIERS))]
        allowed = " or ".join(sorted(MERCHANT_TIERS))
        bad_tier = {p: f"must be {allowed}, got {short_repr(v)}" for p, v in bad_values.items()}
        problems += row_problems(source, "merchant_tier", bad_tier, bad_tier)

    keys = ["merchant_id", "query_id", "product_id"]
    if all(k in df.columns for k in keys) and len(df):
        key_frame = df[keys].astype("str").reset_index(drop=True)
        dup = key_frame.duplicated(keep="first")
        if dup.any():
            first_row = key_frame.reset_index().groupby(keys, sort=False)["index"].transform("min")
            messages = {
                int(p): (
                    f"duplicate of row {int(first_row[p]) + 1} "
                    f"(query_id {key_frame.at[p, 'query_id']!r}, "
                    f"merchant {key_frame.at[p, 'merchant_id']!r})"
                )
                for p in dup[dup].index
            }
            problems += row_problems(source, "product_id", messages, messages)
    return problems
