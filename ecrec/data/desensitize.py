"""Desensitisation applied to every row before it is written (DESIGN.md, "Data contract").

Shoppers type contact details into search boxes and sellers paste them into
product descriptions. Anything that identifies a person is masked before data
reaches a merchant's training set, and raw user ids are replaced by keyed
hashes so rows still group by shopper without naming anyone.

What is masked, and by what:

* e-mail addresses, also written ``name at domain dot com``, ``name (at)
  domain (dot) com`` or ``name [at] domain [dot] org`` -> ``[EMAIL]``
* card numbers: 13-19 digits, contiguous or in groups of 4-6 separated by one
  space or dash, that pass the Luhn check -> ``[CARD]`` (EANs, UPCs and other
  long digit runs that fail Luhn are kept; about one 13-digit EAN in ten
  passes Luhn by chance and is masked too, which loses a barcode, not privacy)
* phone numbers: ``+`` or ``00`` international prefixes, ``1-800`` /
  ``1 (800)`` style, ``(555) 123-4567``, ``555-123-4567``, ten unbroken digits
  starting 2-9 (North-American numbers), a national trunk ``0`` prefix with
  groups (``020 7946 0958``), French pairs (``01 23 45 67 89``) and Spanish
  groupings (``912 345 678``, ``612 34 56 78``); 8-15 digits -> ``[PHONE]``
* US social security numbers ``123-45-6789`` -> ``[SSN]``
* IPv4 and IPv6 addresses (checked by :mod:`ipaddress`) -> ``[IP]``
* street addresses: house number + street name + street type (``1600
  Pennsylvania Ave``, ``221b Baker Street``), French ``12 rue de la Paix``,
  Spanish ``Calle Mayor 5`` and German ``Hauptstraße 5`` -> ``[ADDRESS]``.
  Street types that are also product words (Drive, Square, Circle, Way...)
  count only next to address context (``Apt``, ``Suite``, a ZIP code, or
  ``at`` / ``ship to`` before the number), so "Square Drive Socket" stays.
* invisible characters that could hide any of the above from the patterns
  (zero-width spaces, soft hyphens, bidi controls, C0/C1 controls) are removed.

Product sizes, dimensions, model numbers, years, prices and dates are kept;
the test table in ``tests/data/test_desensitize.py`` lists what is caught and
what is deliberately kept, measured against real home-improvement titles.

The patterns are hand-written: PII libraries (Presidio, libphonenumber's
matcher) need language models or a region per text and are far too slow for
logs of millions of rows. Every pattern starts at a token boundary and has
bounded repetition, so hostile input cannot make matching quadratic.

:func:`find_plain_pii` / :func:`check_desensitised` are the node-side re-check:
they use exactly the detectors that :func:`mask_text` uses, so masked output
never trips them, and they run a vectorised pre-filter (Arrow's RE2) first so a
whole frame is checked in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ecrec.atomic import fsync_dir
from ecrec.data.schema import Problem, row_problems
from ecrec.errors import ConfigError, DataError

EMAIL_TOKEN = "[EMAIL]"
PHONE_TOKEN = "[PHONE]"
CARD_TOKEN = "[CARD]"
SSN_TOKEN = "[SSN]"
IP_TOKEN = "[IP]"
ADDRESS_TOKEN = "[ADDRESS]"

#: Free-text columns that :func:`desensitize_frame` masks and :func:`find_plain_pii` checks.
TEXT_COLUMNS: tuple[str, ...] = (
    "query",
    "product_title",
    "product_text",
    "brand",
    "colour",
    "category",
    "material",
    "price_band",
    "description",
    "user_segment",
)

#: Bytes of secret in a per-dataset user-id hash key (HMAC-SHA256 key size).
HASH_KEY_BYTES = 32
#: Shortest key :func:`hash_user_id` accepts.
MIN_HASH_KEY_BYTES = 16
#: Hex characters of HMAC-SHA256 kept in ``user_id_hash`` (128 bits).
USER_ID_HASH_CHARS = 32
USER_ID_HASH_PATTERN = re.compile(rf"[0-9a-f]{{{USER_ID_HASH_CHARS}}}")

_MIN_PHONE_DIGITS = 8
_MAX_PHONE_DIGITS = 15

# --------------------------------------------------------------------------- detectors

_Replace = Callable[[re.Match[str]], str]


@dataclass(frozen=True)
class _Detector:
    """One kind of PII: a candidate pattern and a replacement that may keep the match.

    ``replace`` returns the match text unchanged when the candidate is not PII
    (a Luhn failure, too few digits...), so "the detector fires" means
    "``replace`` changed something", for masking and re-checking alike.
    """

    kind: str
    pattern: re.Pattern[str]
    replace: _Replace


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (hand-written: 6 lines)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# Invisible characters: C0 controls become a space; C1 controls (seen inside
# mojibake in real catalogues), zero-width, bidi and format characters are
# dropped; lone surrogates (only JSON escapes make them) become U+FFFD.
_CONTROL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_INVISIBLE_CHARS = "\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
_SURROGATES = "\ud800-\udfff"
_HIDDEN_RE = re.compile(f"[{_CONTROL_CHARS}{_INVISIBLE_CHARS}{_SURROGATES}]")


def _replace_hidden(match: re.Match[str]) -> str:
    char = match.group(0)
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"
    return " " if char < "\x7f" else ""


# E-mail: local part, an "at" (sign, bracketed word or plain word) and a
# domain whose labels are joined by dots (literal, bracketed or plain word).
_AT = r"(?P<at>\s*[@＠]\s*|\s*[(\[{<]\s*at\s*[)\]}>]\s*|\s+at\s+)"
_DOT = r"(?:\s*[(\[{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+|\.)"
_EMAIL_RE = re.compile(
    rf"(?<![\w.%+\-])(?P<local>[\w.%+\-]+){_AT}(?P<domain>[\w\-]+(?:{_DOT}[\w\-]+)+)",
    re.IGNORECASE,
)
_DOT_SPLIT_RE = re.compile(f"({_DOT})", re.IGNORECASE)
#: Top-level domains accepted after the plain-word form ("jo at mail dot com"),
#: so that "look at this dot matrix" is not an address.
_WORD_FORM_TLDS = frozenset(
    re.findall(
        r"\w+",
        "com net org edu gov mil int info biz io co me us uk ca de fr es it nl be ch at au nz ie "
        "in jp cn ru br mx pl se no dk fi pt eu app dev shop store online xyz email mail",
    )
)


def _replace_email(match: re.Match[str]) -> str:
    """Mask the longest prefix of the domain that ends in a real top-level domain.

    ``a@shop.com.123`` masks ``a@shop.com`` and keeps ``.123``; trimming
    instead of giving up keeps a trailing number from shielding the address.
    Linear in the match, so a hostile run of "dot" words cannot stall it.
    """
    word_at = match.group("at").strip().lower() == "at"
    if word_at and not any(ch.isalpha() for ch in match.group("local")):
        return match.group(0)
    parts = _DOT_SPLIT_RE.split(match.group("domain"))  # label, sep, label, sep, label...
    labels, seps = parts[0::2], parts[1::2]
    first_literal_dot = next((i for i, sep in enumerate(seps) if sep == "."), len(seps))
    for count in range(len(labels), 1, -1):
        tld = labels[count - 1]
        if not (tld.isalpha() and 2 <= len(tld) <= 24):
            continue
        if word_at and (tld.lower() not in _WORD_FORM_TLDS or first_literal_dot < count - 1):
            continue
        return EMAIL_TOKEN + "".join(parts[2 * count - 1 :])
    return match.group(0)


def _phone_replacer(min_digits: int, max_digits: int) -> _Replace:
    def replace(match: re.Match[str]) -> str:
        count = len(_digits(match.group(0)))
        return PHONE_TOKEN if min_digits <= count <= max_digits else match.group(0)

    return replace


_phone = _phone_replacer(_MIN_PHONE_DIGITS, _MAX_PHONE_DIGITS)
# A number ends where no further digit, word character or decimal part follows.
_END = r"(?![\w\-/]|[.,]\d)"
_START = r"(?<![\w.\-/+,])"

_INTL_PLUS_RE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){1,6}(?!\d)")
# "00" numbers need a break after the country code: unbroken, they look like GTIN-14s.
_INTL_00_RE = re.compile(
    rf"{_START}00[1-9]\d{{0,2}}(?:[ .\-]\(?\d{{1,5}}\)?|\(\d{{1,5}}\))"
    r"(?:[ .\-]?\(?\d{1,5}\)?){0,5}(?!\d)"
)
_TOLL_FREE_RE = re.compile(
    rf"{_START}1[ .\-]?(?:\(\d{{3}}\)|\d{{3}})[ .\-]?\d{{3}}[ .\-]?\d{{4}}{_END}"
)
_PARENS_RE = re.compile(r"(?<![\w(])\(\d{2,5}\)[ .\-]?\d{3,4}[ .\-]?\d{3,4}(?!\d)")
_NANP_GROUPS_RE = re.compile(rf"{_START}\d{{3}}[ .\-]\d{{3}}[ .\-]\d{{4}}{_END}")
_NANP_PLAIN_RE = re.compile(rf"{_START}[2-9]\d{{9}}{_END}")
_TRUNK_RE = re.compile(rf"{_START}0[1-9]\d{{0,3}}[ \-]\d{{3,4}}[ \-]?\d{{3,5}}{_END}")
_FR_RE = re.compile(rf"{_START}0[1-9]([ .\-])\d{{2}}(?:\1\d{{2}}){{3}}{_END}")
_ES_RE = re.compile(
    rf"{_START}[6-9]\d{{2}}([ .\-])(?:\d{{3}}\1\d{{3}}|\d{{2}}\1\d{{2}}\1\d{{2}}){_END}"
)

_CARD_RE = re.compile(
    r"(?<![\d\-])(?:\d{13,19}|\d{4,6}(?:[ \-]\d{4,6}){2,3}(?:[ \-]\d{1,4})?)(?!\d)"
)
_CARD_SPLIT_RE = re.compile(r"([ \-])")


def _replace_card(match: re.Match[str]) -> str:
    """Mask the longest run of leading digit groups that is a Luhn-valid 13-19 digit number.

    A card followed by its security code ("4111 1111 1111 1111 123") masks the
    card and keeps the code's digits out of the checksum.
    """
    parts = _CARD_SPLIT_RE.split(match.group(0))  # group, sep, group...
    for end in range(len(parts), 0, -2):
        digits = "".join(parts[0:end:2])
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return CARD_TOKEN + "".join(parts[end:])
    return match.group(0)


_SSN_RE = re.compile(r"(?<![\w\-])(?!000|666|9)\d{3}([\- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w\-])")

_IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6_RE = re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]{2,45}(?![\w:]|\.\w)")


def _replace_ipv4(match: re.Match[str]) -> str:
    try:
        ipaddress.IPv4Address(match.group(0))
    except ValueError:
        return match.group(0)
    return IP_TOKEN


def _replace_ipv6(match: re.Match[str]) -> str:
    text = match.group(0)
    groups = [g for g in text.split(":") if g]
    if text.count(":") < 2 or ("::" not in text and text.count(":") != 7) or len(groups) < 3:
        return text
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return text
    return IP_TOKEN


# Street addresses. Name words exclude units so "22 in. Drive" is not a street.
_UNITS = (
    "in|inch|inches|ft|feet|foot|yd|yard|yards|mm|cm|m|km|fl|oz|lb|lbs|gal|gallon|gallons|qt|pt"
    "|cu|sq|amp|amps|a|volt|volts|v|watt|watts|w|kw|degree|degrees|deg|pack|pk|pc|pcs|piece"
    "|pieces|count|ct|total|x|btu|psi|gauge|ga|hp|mph|rpm|hour|hours|hr|year|years|yr|day|days"
    "|min|sec|ton|kg|g|l|ml|liter|litre|lumen|lumens|lm|k|the|and|or|of|for|with|to|in"
)
_LETTERS = r"[^\W\d_]"
_NAME_WORD = rf"(?!(?:{_UNITS})\b)(?:\d{{1,3}}(?:st|nd|rd|th)|{_LETTERS}+(?:['’]{_LETTERS}+)?)"
# Name words end without a dot: "3 ft. Drive" is a size, not a street.
_NAME_WORDS = rf"(?:{_NAME_WORD}\s+){{1,3}}"
_HOUSE = r"(?<![\w\-./,#])\d{1,5}[A-Za-z]?(?:-\d{1,4})?"
_DIRECTION = r"(?:(?:[NSEW]|north|south|east|west)\.?\s+)?"
_PLAIN_TYPES = r"street|st|avenue|ave|boulevard|blvd|lane|ln|terrace|parkway|pkwy|highway|hwy"
_CONTEXT_TYPES = (
    r"road|rd|drive|dr|way|place|pl|court|ct|circle|cir|square|sq|trail|trl|plaza|walk|row"
    r"|alley|loop|path|point|close|crescent|grove|mews"
)
_ADDRESS_CUE = r"\b(?:at|to|address|addr|live|lives|located|visit|send|ship|deliver)\s*:?\s+"
_AFTER_CONTEXT = (
    r"(?=\s*(?:,\s*)?(?:#\s*\d|(?:apt|apartment|suite|ste|unit|floor|fl)\b\.?\s*\d|\d{5}\b))"
)
_STREET = rf"{_HOUSE}\s+{_DIRECTION}{_NAME_WORDS}"
_ADDRESS_EN_RE = re.compile(
    rf"{_STREET}(?:{_PLAIN_TYPES})\b\.?(?![\w\-])",
    re.IGNORECASE,
)
# Street types that are also product words need an address cue before the number...
_ADDRESS_EN_CUED_RE = re.compile(
    rf"(?P<cue>{_ADDRESS_CUE}){_STREET}(?:{_CONTEXT_TYPES})\b\.?(?![\w\-])",
    re.IGNORECASE,
)
# ...or an apartment, suite or ZIP code after the street.
_ADDRESS_EN_FOLLOWED_RE = re.compile(
    rf"{_STREET}(?:{_CONTEXT_TYPES})\b\.?(?![\w\-]){_AFTER_CONTEXT}",
    re.IGNORECASE,
)
_FR_ARTICLE = r"(?:de\s+la\s+|de\s+l['’]|d['’]|du\s+|des\s+|de\s+|la\s+|le\s+|les\s+)"
_FR_NAME = r"[^\W\d_][\w'’\-]*"
_ADDRESS_FR_RE = re.compile(
    rf"{_HOUSE}(?:\s?(?:bis|ter)\b)?,?\s+(?:(?:rue|avenue|boulevard|bd|chemin|allée|allee|impasse"
    rf"|quai)\s+{_FR_ARTICLE}?|place\s+{_FR_ARTICLE}){_FR_NAME}",
    re.IGNORECASE,
)
_ADDRESS_ES_RE = re.compile(
    r"(?<![\w\-])(?:calle|c/|avenida|avda\.?|carrer|rúa|rua)\s+(?:de\s+(?:la\s+|los\s+|las\s+)?"
    r"|del\s+)?[^\W\d_][\w'’\-]*(?:\s+[^\W\d_][\w'’\-]*){0,2},?\s+(?:n[ºo°.]\s*)?\d{1,4}[a-z]?"
    r"(?![\w/\-]|[.,]\d)",
    re.IGNORECASE,
)
_ADDRESS_DE_RE = re.compile(
    r"(?<![\w\-])[^\W\d_]{2,}(?:straße|strasse|str\.|gasse|allee|weg|platz)\s+\d{1,4}[a-z]?"
    r"(?![\w/\-]|[.,]\d)",
    re.IGNORECASE,
)


def _token(token: str) -> _Replace:
    return lambda match: token


def _keep_cue(match: re.Match[str]) -> str:
    return match.group("cue") + ADDRESS_TOKEN


_HIDDEN = _Detector("invisible control character", _HIDDEN_RE, _replace_hidden)
_EMAIL = _Detector("e-mail address", _EMAIL_RE, _replace_email)
_IPV6 = _Detector("IP address", _IPV6_RE, _replace_ipv6)
_IPV4 = _Detector("IP address", _IPV4_RE, _replace_ipv4)
_NUMBERS = (
    _Detector("phone number", _INTL_PLUS_RE, _phone),
    _Detector("phone number", _INTL_00_RE, _phone_replacer(10, 17)),
    _Detector("phone number", _TOLL_FREE_RE, _phone),
    _Detector("card number", _CARD_RE, _replace_card),
    _Detector("social security number", _SSN_RE, _token(SSN_TOKEN)),
    _Detector("phone number", _PARENS_RE, _phone),
    _Detector("phone number", _NANP_GROUPS_RE, _phone),
    _Detector("phone number", _NANP_PLAIN_RE, _phone),
    _Detector("phone number", _TRUNK_RE, _phone),
    _Detector("phone number", _FR_RE, _phone),
    _Detector("phone number", _ES_RE, _phone),
)
_ADDRESSES = (
    _Detector("street address", _ADDRESS_EN_RE, _token(ADDRESS_TOKEN)),
    _Detector("street address", _ADDRESS_EN_CUED_RE, _keep_cue),
    _Detector("street address", _ADDRESS_EN_FOLLOWED_RE, _token(ADDRESS_TOKEN)),
    _Detector("street address", _ADDRESS_FR_RE, _token(ADDRESS_TOKEN)),
    _Detector("street address", _ADDRESS_ES_RE, _token(ADDRESS_TOKEN)),
    _Detector("street address", _ADDRESS_DE_RE, _token(ADDRESS_TOKEN)),
)

#: Every detector, in masking order: hidden characters first (they could split a
#: pattern), then e-mails and IPs (which contain digits), international phones
#: before cards ("+4915112345678" is a phone), the rest, and addresses last.
_DETECTORS: tuple[_Detector, ...] = (_HIDDEN, _EMAIL, _IPV6, _IPV4, *_NUMBERS, *_ADDRESSES)

# Pre-filters in RE2 syntax, for Arrow's vectorised matcher: each is a superset
# of its detectors, so a text none of them matches cannot change under masking,
# and a text only one matches needs only that group's detectors. Python's \d,
# \s and \w are Unicode-aware and RE2's are ASCII, so classes are widened here.
_RE2_DIGIT = r"\p{Nd}"
_RE2_SPACE = r"[\s\x{0b}\x{1c}-\x{1f}\x{85}\p{Z}]"
_RE2_HOUSE = rf"{_RE2_DIGIT}[^\s]{{0,12}}{_RE2_SPACE}+"
_RE2_STREET = (
    rf"{_RE2_HOUSE}(?:(?:[nsew]|north|south|east|west)\.?{_RE2_SPACE}+)?"
    rf"(?:[\pL\pM\pN'’]+{_RE2_SPACE}+){{1,3}}"
)
_PREFILTERS: tuple[tuple[str, tuple[_Detector, ...]], ...] = (
    (
        r"[\x{00}-\x{08}\x{0b}\x{0c}\x{0e}-\x{1f}\x{7f}-\x{9f}\x{ad}\x{61c}\x{180e}"
        r"\x{200b}-\x{200f}\x{202a}-\x{202e}\x{2060}-\x{2064}\x{2066}-\x{206f}\x{feff}]",
        (_HIDDEN,),
    ),
    (r"[@＠]|(?i:\bat\b)", (_EMAIL,)),
    (r":[0-9A-Fa-f.]{0,4}:", (_IPV6,)),
    (rf"{_RE2_DIGIT}\.{_RE2_DIGIT}+\.{_RE2_DIGIT}+\.{_RE2_DIGIT}", (_IPV4,)),
    # Every phone, card and SSN has 8+ digits, at most 3 characters apart.
    (rf"{_RE2_DIGIT}(?:[^\p{{Nd}}]{{0,3}}{_RE2_DIGIT}){{7}}", _NUMBERS),
    (
        "|".join(
            (  # a house number, up to 4 words, a street type (English) ...
                rf"(?i:{_RE2_STREET}(?:{_PLAIN_TYPES}|{_CONTEXT_TYPES})\b)",
                # ... a house number and a French street word ...
                rf"(?i:{_RE2_HOUSE}(?:(?:bis|ter),?{_RE2_SPACE}+)?(?:rue|avenue|boulevard|bd"
                r"|chemin|allée|allee|impasse|quai|place))",
                # ... or a street type before a number (Spanish, German).
                r"(?is:(?:\b(?:calle|avenida|avda|carrer|rua)\b|rúa|c/).*\p{Nd})",
                rf"(?i:(?:straße|strasse|str\.|gasse|allee|weg|platz){_RE2_SPACE}+{_RE2_DIGIT})",
            )
        ),
        _ADDRESSES,
    ),
)
_ORDER = {id(detector): index for index, detector in enumerate(_DETECTORS)}


def _mask_once(text: str, detectors: tuple[_Detector, ...] = _DETECTORS) -> str:
    for detector in detectors:
        text = detector.pattern.sub(detector.replace, text)
    return text


def mask_text(text: str) -> str:
    """Replace PII in ``text`` by tokens (see the module docstring for what counts).

    Masking repeats until nothing changes, so a number that only becomes
    recognisable once its neighbour is masked is caught too, and masking is
    idempotent. It ends: every replacement removes digits, an ``@``, an "at"
    word or an invisible character, and tokens contain none of them.
    """
    if not text:
        return text
    while True:
        masked = _mask_once(text)
        if masked == text:
            return text
        text = masked


def pii_kinds(text: str, detectors: tuple[_Detector, ...] = _DETECTORS) -> list[str]:
    """The kinds of PII that :func:`mask_text` would mask in ``text`` (empty if none)."""
    kinds: list[str] = []
    for detector in detectors:
        if detector.kind in kinds:
            continue
        for match in detector.pattern.finditer(text):
            if detector.replace(match) != match.group(0):
                kinds.append(detector.kind)
                break
    return kinds


def _suspects(values: list[str]) -> list[tuple[_Detector, ...]]:
    """For each value, the detectors that could fire on it (vectorised; never misses one)."""
    try:
        array = pa.array(values, type=pa.large_string())
    except (pa.ArrowException, UnicodeError):  # lone surrogates: check everything
        return [_DETECTORS] * len(values)
    hits = [pc.match_substring_regex(array, pattern).to_pylist() for pattern, _ in _PREFILTERS]
    combos: dict[tuple[bool, ...], tuple[_Detector, ...]] = {}
    out = []
    for flags in zip(*hits, strict=True):
        if flags not in combos:
            chosen = [
                d
                for flag, (_, group) in zip(flags, _PREFILTERS, strict=True)
                if flag
                for d in group
            ]
            combos[flags] = tuple(sorted(chosen, key=lambda d: _ORDER[id(d)]))
        out.append(combos[flags])
    return out


def _candidates(values: list[str]) -> list[bool]:
    """Which ``values`` might hold PII at all."""
    return [bool(detectors) for detectors in _suspects(values)]


def _mask_suspect(text: str, detectors: tuple[_Detector, ...]) -> str:
    """``mask_text(text)``, trying only ``detectors`` first (most suspects hold no PII).

    If none of them changes the text, no other detector can (the pre-filters
    are supersets), so the text is a fixed point of :func:`mask_text`.
    """
    if _mask_once(text, detectors) == text:
        return text
    return mask_text(text)


def _unique_text(values: pd.Series) -> list[str]:
    return [v for v in values.dropna().drop_duplicates().tolist() if isinstance(v, str) and v]


# --------------------------------------------------------------------------- user ids


def hash_user_id(user_id: str, *, key: bytes) -> str:
    """HMAC-SHA256 of a user id under a per-dataset secret key (32 hex characters).

    Rows still group by shopper, but without the key nobody can test candidate
    ids (e-mail lists, loyalty numbers) against the hashes, as they could
    against a plain or publicly-salted hash.
    """
    if not isinstance(key, bytes) or len(key) < MIN_HASH_KEY_BYTES:
        size = len(key) if isinstance(key, bytes) else type(key).__name__
        raise ConfigError(
            f"user-id hash key must be at least {MIN_HASH_KEY_BYTES} random bytes, got {size}"
        )
    message = str(user_id).encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:USER_ID_HASH_CHARS]


def hash_key_id(key: bytes) -> str:
    """A public fingerprint of a hash key, recorded in manifests to tell keys apart."""
    return hmac.new(key, b"ecrec user-id hash key id", hashlib.sha256).hexdigest()[:16]


def synthetic_hash_key(label: str) -> bytes:
    """A deterministic key for *synthetic* data only (its shopper ids are invented).

    Real data must use :func:`new_hash_key`: a key derived from public text
    is no secret.
    """
    return hashlib.sha256(f"ecrec synthetic user-id key\x1f{label}".encode()).digest()


def new_hash_key() -> bytes:
    """A fresh per-dataset secret for :func:`hash_user_id`."""
    return os.urandom(HASH_KEY_BYTES)


def default_hash_key_path(out_dir: str | os.PathLike[str]) -> Path:
    """``<out>.hashkey`` beside the data folder, so the key never travels with the data."""
    out = Path(out_dir)
    return out.with_name(f"{out.name}.hashkey")


def read_hash_key(path: str | os.PathLike[str]) -> bytes:
    """Read a key file written by :func:`write_hash_key`, refusing one others can read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError as err:
        raise DataError(f"{path}: hash key: no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: hash key: cannot read ({type(err).__name__})") from err
    if mode & 0o077:
        raise DataError(
            f"{path}: hash key: readable by other users (mode {mode & 0o777:o}); "
            f"run `chmod 600 {path}`"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise DataError(f"{path}: hash key: not a key file (expected 64 hex characters)")
    return bytes.fromhex(text)


def write_hash_key(path: str | os.PathLike[str], key: bytes) -> None:
    """Create ``path`` (mode 0600, never replacing a file) holding ``key`` as hex."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as err:
        raise DataError(f"{path}: hash key: already exists") from err
    except OSError as err:
        raise DataError(f"{path}: hash key: cannot create ({err.strerror})") from err
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key.hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    fsync_dir(path.parent)


# --------------------------------------------------------------------------- frames


def _mask_series(values: pd.Series) -> pd.Series:
    """Mask each distinct value once, and only those the pre-filter flags."""
    unique = _unique_text(values)
    mapping = {
        value: masked
        for value, detectors in zip(unique, _suspects(unique), strict=True)
        if detectors and (masked := _mask_suspect(value, detectors)) != value
    }
    return values.replace(mapping) if mapping else values


def _hash_series(values: pd.Series, key: bytes) -> pd.Series:
    """``user_id_hash`` values: missing or blank ids stay missing, never hash to a shared value."""
    mapping: dict[object, str] = {}
    for value in pd.unique(values.dropna()):
        text = str(value).strip()
        if text:
            mapping[value] = hash_user_id(text, key=key)
    return pd.Series(values.map(mapping), index=values.index, dtype="str")


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
