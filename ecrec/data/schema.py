"""The impression-level data contract (see DESIGN.md, "Data contract").

One row is one impression: a product shown for a query at one merchant. These
constants are the single source of truth for column names and types; the
validator, importers, synthesizer, trainer and evaluators all read them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ecrec.errors import DataError, EcrecError

#: Columns every impressions file must have, with the kind of value each holds.
REQUIRED_COLUMNS: dict[str, str] = {
    "query_id": "string",
    "query": "string",
    "product_id": "string",
    "product_title": "string",
    "product_text": "string",
    "merchant_id": "string",
    "label": "int",  # 0/1 click or purchase
    "user_segment": "string",  # sensitive attribute for fairness audits
    "merchant_tier": "string",  # "small" or "large", for provider exposure
}

#: Columns that may be present; when they are, they must have these kinds.
OPTIONAL_COLUMNS: dict[str, str] = {
    "relevance": "int",  # graded relevance 0..3 (synthetic data, ESCI, WANDS)
    "position": "int",  # 1-based rank at which the impression was shown
    "user_id_hash": "string",  # HMAC under a per-dataset secret key, never the raw id
    # Structured product fields, used for field-level explanations.
    "brand": "string",
    "colour": "string",
    "category": "string",
    "material": "string",
    "price_band": "string",
    "description": "string",
}

#: The shopper id column: one DP unit per distinct value when privacy.unit = "user".
USER_ID = "user_id_hash"

#: Column order of every frame the synthesizer and importers write.
COLUMN_ORDER: tuple[str, ...] = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)

MERCHANT_TIERS: frozenset[str] = frozenset({"small", "large"})
LABEL_VALUES: frozenset[int] = frozenset({0, 1})
RELEVANCE_RANGE: tuple[int, int] = (0, 3)

#: Structured fields in the order they are joined into ``product_text``.
PRODUCT_FIELDS: tuple[str, ...] = (
    "brand",
    "colour",
    "category",
    "material",
    "price_band",
    "description",
)

#: Longest text (characters) one cell may hold; anything longer is a broken or hostile file.
MAX_TEXT_CHARS = 100_000

#: Names that become part of a file or folder name (merchant ids, run names):
#: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, so
#: that no name can be ``..``, hidden, absolute or contain a path separator.
SAFE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_SAFE_NAME_RE = re.compile(SAFE_NAME_PATTERN)
SAFE_NAME_RULE = "1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"

#: At most this many rows are listed for one (field, kind of problem); the rest
#: are summarised in one extra problem, so a bad column does not print a million lines.
MAX_ROWS_PER_CHECK = 20

#: File names inside a data folder (written by ``ecrec data synth|import``).
MERCHANT_FILE_PATTERN = "merchant_{merchant_id}.parquet"
VALIDATION_FILE = "validation.parquet"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Problem:
    """One contract violation, printed as ``file:row: field: message``."""

    file: str
    row: int | None  # 1-based data row; None for file-level problems
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row is not None else self.file
        return f"{where}: {self.field}: {self.message}"


def short_repr(value: object) -> str:
    """``repr`` cut to 40 characters, for quoting a bad value in a one-line error."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def row_problems(
    source: str, field_name: str, rows: Iterable[int], message_for: Mapping[int, str] | str
) -> list[Problem]:
    """Problems for 0-based positional ``rows``, capped at :data:`MAX_ROWS_PER_CHECK`."""
    rows = list(rows)
    out = []
    for pos in rows[:MAX_ROWS_PER_CHECK]:
        message = message_for if isinstance(message_for, str) else message_for[pos]
        out.append(Problem(source, pos + 1, field_name, message))
    if len(rows) > MAX_ROWS_PER_CHECK:
        first = message_for if isinstance(message_for, str) else "the same kind of problem"
        out.append(
            Problem(
                source,
                None,
                field_name,
                f"{len(rows) - MAX_ROWS_PER_CHECK} more rows with this problem ({first})",
            )
        )
    return out


def is_safe_name(value: object) -> bool:
    """Whether ``value`` may be used inside a file or folder name (:data:`SAFE_NAME_PATTERN`)."""
    return isinstance(value, str) and _SAFE_NAME_RE.fullmatch(value) is not None


def check_safe_name(
    value: object,
    *,
    field: str,
    source: str,
    row: int | None = None,
    error: type[EcrecError] = DataError,
) -> str:
    """Return ``value`` if it is a safe name, else raise ``error`` naming source, row and field.

    The one gate for every name that ends up in a path (merchant ids, run and
    output names), so ``"../../x"`` in input data cannot write outside a folder.
    """
    if is_safe_name(value):
        return str(value)
    message = f"{short_repr(value)} is not allowed as a name ({SAFE_NAME_RULE})"
    raise error(str(Problem(source, row, field, message)))


def check_merchant_id(value: object, *, source: str, row: int | None = None) -> str:
    """A merchant id that is safe in a file name (``merchant_<id>.parquet``), or DataError."""
    return check_safe_name(value, field="merchant_id", source=source, row=row)


def compose_product_text(fields: dict[str, str]) -> str:
    """Join structured product fields into the ``product_text`` the ranker reads.

    The format is ``"brand: X | colour: Y | ..."`` so that field-level
    explanations can map tokens back to fields.
    """
    parts = [f"{name}: {fields[name]}" for name in PRODUCT_FIELDS if fields.get(name)]
    return " | ".join(parts)


def merchant_ids(n: int) -> list[str]:
    """Merchant ids ``m00, m01, ...`` (wider when there are more than 100)."""
    width = max(2, len(str(n - 1)))
    return [f"m{i:0{width}d}" for i in range(n)]


def tiers_by_size(sizes: dict[str, int]) -> dict[str, str]:
    """``large`` for the biggest quarter of merchants (at least one), ``small`` otherwise."""
    n_large = max(1, round(len(sizes) * 0.25))
    ranked = sorted(sizes, key=lambda m: (-sizes[m], m))
    large = set(ranked[:n_large])
    return {m: ("large" if m in large else "small") for m in sizes}


def ranker_documents(frame: Any) -> list[str]:
    """The product side of each (query, product) pair the ranker reads.

    ``"<title> | <product_text>"``: the title carries most of the signal in real
    catalogues (ESCI, WANDS), the structured text the rest. Training, scoring
    and explanations all read products through this one function.
    """
    titles = frame["product_title"].astype(str).tolist()
    texts = frame["product_text"].astype(str).tolist()
    return [
        f"{title} | {text}" if text else title for title, text in zip(titles, texts, strict=True)
    ]
