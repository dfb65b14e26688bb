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

Modules: ``detectors`` (hidden characters, e-mails, IPs, phone / card / SSN numbers),
``addresses`` (street addresses), ``masking`` (detector order, pre-filters,
:func:`mask_text`), ``hashing`` (keyed shopper ids and key files) and ``frames``
(:func:`desensitize_frame` and the re-check).
"""

from ecrec.data.desensitize.detectors import (
    ADDRESS_TOKEN,
    CARD_TOKEN,
    EMAIL_TOKEN,
    IP_TOKEN,
    PHONE_TOKEN,
    SSN_TOKEN,
    luhn_valid,
)
from ecrec.data.desensitize.frames import (
    TEXT_COLUMNS,
    check_desensitised,
    desensitize_frame,
    find_plain_pii,
)
from ecrec.data.desensitize.hashing import (
    HASH_KEY_BYTES,
    MIN_HASH_KEY_BYTES,
    USER_ID_HASH_CHARS,
    USER_ID_HASH_PATTERN,
    default_hash_key_path,
    hash_key_id,
    hash_user_id,
    new_hash_key,
    read_hash_key,
    synthetic_hash_key,
    write_hash_key,
)
from ecrec.data.desensitize.masking import mask_text, pii_kinds

__all__ = [
    "ADDRESS_TOKEN",
    "CARD_TOKEN",
    "EMAIL_TOKEN",
    "HASH_KEY_BYTES",
    "IP_TOKEN",
    "MIN_HASH_KEY_BYTES",
    "PHONE_TOKEN",
    "SSN_TOKEN",
    "TEXT_COLUMNS",
    "USER_ID_HASH_CHARS",
    "USER_ID_HASH_PATTERN",
    "check_desensitised",
    "default_hash_key_path",
    "desensitize_frame",
    "find_plain_pii",
    "hash_key_id",
    "hash_user_id",
    "luhn_valid",
    "mask_text",
    "new_hash_key",
    "pii_kinds",
    "read_hash_key",
    "synthetic_hash_key",
    "write_hash_key",
]
