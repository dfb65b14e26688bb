"""Street-address detectors: English (with address context for product-word street types),
French, Spanish and German forms."""

from __future__ import annotations

import re

from ecrec.data.desensitize.detectors import ADDRESS_TOKEN, _Detector, _token

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


def _keep_cue(match: re.Match[str]) -> str:
    return match.group("cue") + ADDRESS_TOKEN


_ADDRESSES = (
    _Detector("street address", _ADDRESS_EN_RE, _token(ADDRESS_TOKEN)),
    _Detector("street address", _ADDRESS_EN_CUED_RE, _keep_cue),
    _Detector("street address", _ADDRESS_EN_FOLLOWED_RE, _token(ADDRESS_TOKEN)),
    _Detector("street address", _ADDRESS_FR_RE, _token(ADDRESS_TOKEN)),
    _Detector("street address", _ADDRESS_ES_RE, _token(ADDRESS_TOKEN)),
    _Detector("street address", _ADDRESS_DE_RE, _token(ADDRESS_TOKEN)),
)
