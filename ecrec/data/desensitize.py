"""Desensitisation applied to every row before it is written (DESIGN.md, "Data contract").

Shoppers type e-mail addresses and phone numbers into search boxes, and sellers
paste them into product descriptions. Anything that identifies a person must be
masked before data reaches a merchant's training set, and raw user ids are
replaced by salted hashes so that rows can still be grouped by shopper without
naming them.

Masking is conservative about ordinary numbers: shoe sizes ("42"), years
("2024"), volumes ("500ml"), prices ("19.99") and any plain digit run shorter
than 13 digits are left alone. Only these are masked:

* e-mail addresses -> ``[EMAIL]``
* card-like digit runs of 13-19 digits, contiguous or in groups of 4-6 digits
  separated by single spaces or dashes -> ``[CARD]``
* phone numbers written the way people write them: with a leading ``+`` country
  code, an area code in parentheses, ``555-123-4567`` style groups, or a
  national trunk prefix ``0`` followed by separated groups -> ``[PHONE]``

``mask_text`` is idempotent: masking already-masked text changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import pandas as pd

from ecrec.errors import ConfigError

EMAIL_TOKEN = "[EMAIL]"
PHONE_TOKEN = "[PHONE]"
CARD_TOKEN = "[CARD]"

#: Text columns that are masked by :func:`desensitize_frame`.
TEXT_COLUMNS: tuple[str, ...] = ("query", "product_title", "product_text", "description")

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")

_CARD_RE = re.compile(r"(?<!\d)(?:\d{13,19}|\d{4,6}(?:[ \-]\d{4,6}){2,3}(?:[ \-]\d{1,4})?)(?!\d)")

_PHONE_RES: tuple[re.Pattern[str], ...] = (
    # International: +44 20 7946 0958, +1-415-555-0134, +4915112345678.
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){1,6}(?![\d])"),
    # Area code in parentheses: (555) 123-4567, (020) 7946 0958.
    re.compile(r"(?<![\w(])\(\d{2,5}\)[ .\-]?\d{3,4}[ .\-]?\d{3,4}(?!\d)"),
    # North-American groups: 555-123-4567, 555.123.4567, 555 123 4567.
    re.compile(r"(?<![\w.\-])\d{3}[ .\-]\d{3}[ .\-]\d{4}(?![\w\-]|\.\d)"),
    # National trunk prefix: 020 7946 0958, 07700 900123, 030-12345678.
    re.compile(r"(?<![\w.\-])0\d{1,4}[ \-]\d{3,4}[ \-]?\d{3,5}(?![\w\-]|\.\d)"),
)

_MIN_PHONE_DIGITS = 8
_MAX_PHONE_DIGITS = 15


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def _mask_card(match: re.Match[str]) -> str:
    return CARD_TOKEN if 13 <= _digit_count(match.group(0)) <= 19 else match.group(0)


def _mask_phone(match: re.Match[str]) -> str:
    digits = _digit_count(match.group(0))
    return PHONE_TOKEN if _MIN_PHONE_DIGITS <= digits <= _MAX_PHONE_DIGITS else match.group(0)


def _mask_once(text: str) -> str:
    text = _EMAIL_RE.sub(EMAIL_TOKEN, text)
    if not any(ch.isdigit() for ch in text):
        return text
    # International phones first, so "+49151..." is a phone, not a card.
    text = _PHONE_RES[0].sub(_mask_phone, text)
    text = _CARD_RE.sub(_mask_card, text)
    for pattern in _PHONE_RES[1:]:
        text = pattern.sub(_mask_phone, text)
    return text


def mask_text(text: str) -> str:
    """Replace e-mail addresses, card-like numbers and phone numbers by tokens.

    Masking repeats until nothing changes, so a number that only becomes
    recognisable once its neighbour is masked is caught too, and masking is
    idempotent. Each pass removes digits or ``@``, so this ends.
    """
    if not text:
        return text
    while True:
        masked = _mask_once(text)
        if masked == text:
            return text
        text = masked


def hash_user_id(user_id: str, *, salt: str) -> str:
    """Salted SHA-256 of a user id (32 hex chars), so rows group by shopper anonymously.

    The salt stops anyone with a list of candidate ids from reversing the hash;
    an empty salt is refused.
    """
    if not salt:
        raise ConfigError("user-id salt must not be empty")
    digest = hashlib.sha256(f"{salt}\x1f{user_id}".encode()).hexdigest()
    return digest[:32]


def _map_unique(values: pd.Series, func: Callable[[object], object]) -> pd.Series:
    """Apply ``func`` once per distinct present value (logs repeat product text a lot)."""
    mapping = {v: func(v) for v in pd.unique(values.dropna())}
    return values.map(mapping)


def _mask_series(values: pd.Series) -> pd.Series:
    return _map_unique(values, lambda v: mask_text(v) if isinstance(v, str) else v)


def desensitize_frame(df: pd.DataFrame, *, salt: str) -> pd.DataFrame:
    """Return a copy of ``df`` with text masked and ``user_id`` replaced by ``user_id_hash``."""
    out = df.copy()
    for column in TEXT_COLUMNS:
        if column in out.columns:
            out[column] = _mask_series(out[column])
    if "user_id" in out.columns:
        if not salt:
            raise ConfigError("user-id salt must not be empty")
        hashed = _map_unique(out["user_id"], lambda v: hash_user_id(str(v), salt=salt))
        position = out.columns.get_loc("user_id")
        out = out.drop(columns=["user_id"])
        if "user_id_hash" in out.columns:
            out = out.drop(columns=["user_id_hash"])
        out.insert(min(int(position), len(out.columns)), "user_id_hash", hashed.astype("str"))
    return out
