"""PII detectors: a candidate pattern and a replacement each, for hidden characters,
e-mails, IP addresses, phone, card and social security numbers."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

EMAIL_TOKEN = "[EMAIL]"
PHONE_TOKEN = "[PHONE]"
CARD_TOKEN = "[CARD]"
SSN_TOKEN = "[SSN]"
IP_TOKEN = "[IP]"
ADDRESS_TOKEN = "[ADDRESS]"

_MIN_PHONE_DIGITS = 8
_MAX_PHONE_DIGITS = 15

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


def _token(token: str) -> _Replace:
    return lambda match: token


_HIDDEN = _Detector("invisible control character", _HIDDEN_RE, _replace_hidden)
_EMAIL = _Detector("e-mail address", _EMAIL_RE, _replace_email)
_IPV6 = _Detector("IP address", _IPV6_RE, _replace_ipv6)
_IPV4 = _Detector("IP address", _IPV4_RE, _replace_ipv4)
_NUMBERS = (
    _Detector("phone number", _INTL_PLUS_RE, _phone),
    # Cards before "00..." phones: inside "3000 0000 0010 0000 02" the 00-prefix pattern
    # matches "0010 0000 02" and would leave the card's first eight digits readable
    # (found by Hypothesis). A Luhn-valid 00-number masked as a card is still masked.
    _Detector("card number", _CARD_RE, _replace_card),
    _Detector("phone number", _INTL_00_RE, _phone_replacer(10, 17)),
    _Detector("phone number", _TOLL_FREE_RE, _phone),
    _Detector("social security number", _SSN_RE, _token(SSN_TOKEN)),
    _Detector("phone number", _PARENS_RE, _phone),
    _Detector("phone number", _NANP_GROUPS_RE, _phone),
    _Detector("phone number", _NANP_PLAIN_RE, _phone),
    _Detector("phone number", _TRUNK_RE, _phone),
    _Detector("phone number", _FR_RE, _phone),
    _Detector("phone number", _ES_RE, _phone),
)
