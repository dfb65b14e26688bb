"""Masking text: every detector in order, RE2 pre-filters that pick the detectors a text
needs, :func:`mask_text` and :func:`pii_kinds`."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ecrec.data.desensitize.addresses import _ADDRESSES, _CONTEXT_TYPES, _PLAIN_TYPES
from ecrec.data.desensitize.detectors import _EMAIL, _HIDDEN, _IPV4, _IPV6, _NUMBERS, _Detector

#: Every detector, in masking order: hidden characters first (they could split a
#: pattern), then e-mails and IPs (which contain digits), "+" international phones
#: before cards ("+4915112345678" is a phone), cards before "00" phones, the rest,
#: and addresses last.
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
    """Replace PII in ``text`` by tokens (see :mod:`ecrec.data.desensitize` for what counts).

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
