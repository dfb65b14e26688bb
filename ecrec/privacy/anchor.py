"""The two files that keep a privacy ledger honest from outside it: anchor and lock.

**Anchor** (rollback detection). A small HMAC-sealed JSON file, kept away from
the ledger (by default next to the key file), recording the ledger's random
``ledger_id``, its write counter ``seq`` and the SHA-256 of the ledger file's
bytes as of that write::

    {"format": "ecrec-privacy-ledger-anchor", "version": 1, "ledger_id": "<hex>",
     "seq": 7, "ledger_sha256": "<hex>", "key_id": "<hex>", "hmac": "<hex>"}

The HMAC key is derived from the node secret with its own HKDF info string, so
an anchor cannot be forged or moved between nodes with different keys.

**Lock** (serialising writers). ``fcntl.flock`` on ``<ledger>.lock`` beside the
ledger: writers hold it exclusively from re-reading the ledger to advancing the
anchor; readers hold it shared so they never see a ledger and an anchor from
two different writes. The lock file is never deleted (deleting it would let two
processes lock two different files).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ecrec.atomic import atomic_write_bytes
from ecrec.errors import LedgerCorruptError, PrivacyError
from ecrec.privacy.ledger_codec import LedgerKeys, file_json, mac, mac_matches, parse_json

ANCHOR_FORMAT = "ecrec-privacy-ledger-anchor"
ANCHOR_VERSION = 1
ANCHOR_SUFFIX = ".anchor"
LOCK_SUFFIX = ".lock"
_ANCHOR_FIELDS = frozenset(
    {"format", "version", "ledger_id", "seq", "ledger_sha256", "key_id", "hmac"}
)


@dataclass(frozen=True)
class Anchor:
    """What the anchor remembers about the ledger's latest write."""

    ledger_id: str
    seq: int
    ledger_sha256: str


def default_anchor_path(key_file: Path) -> Path:
    """``key_file`` with ``.anchor`` appended: the anchor travels with the key, not the ledger."""
    return key_file.with_name(key_file.name + ANCHOR_SUFFIX)


def lock_path_for(ledger_path: Path) -> Path:
    return ledger_path.with_name(ledger_path.name + LOCK_SUFFIX)


def _anchor_corrupt(path: Path, problem: str) -> LedgerCorruptError:
    return LedgerCorruptError(
        f"ledger anchor {path} failed verification: {problem}; refusing to use the ledger "
        "(give the right key file and anchor, or restore the anchor)"
    )


def read_anchor(path: Path, keys: LedgerKeys) -> Anchor | None:
    """The verified anchor at ``path``, or ``None`` when there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise PrivacyError(f"cannot read ledger anchor {path}: {err.strerror or err}") from err
    try:
        fields = parse_json(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise _anchor_corrupt(path, f"not valid JSON: {err}") from err
    if not isinstance(fields, dict) or fields.get("format") != ANCHOR_FORMAT:
        raise _anchor_corrupt(path, "not a ledger anchor")
    if fields.get("version") != ANCHOR_VERSION:
        raise _anchor_corrupt(path, f"unsupported version {fields.get('version')!r}")
    if fields.get("key_id") != keys.key_id:
        raise _anchor_corrupt(
            path, f"sealed with key id {fields.get('key_id')!r}, the key file gives {keys.key_id!r}"
        )
    body = {name: value for name, value in fields.items() if name != "hmac"}
    if not mac_matches(keys.anchor_hmac, body, fields.get("hmac")):
        raise _anchor_corrupt(path, "HMAC mismatch (the file was modified outside ecrec)")
    if raw != file_json(fields):
        raise _anchor_corrupt(path, "not byte-identical to the form ecrec writes")
    ledger_id, seq, digest = fields.get("ledger_id"), fields.get("seq"), fields.get("ledger_sha256")
    if not (
        isinstance(ledger_id, str)
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and isinstance(digest, str)
        and set(fields) == _ANCHOR_FIELDS
    ):
        raise _anchor_corrupt(path, "malformed fields")
    return Anchor(ledger_id=ledger_id, seq=seq, ledger_sha256=digest)


def write_anchor(path: Path, anchor: Anchor, keys: LedgerKeys) -> None:
    """Replace the anchor atomically and durably (mode 0600). Raises ``OSError``."""
    body = {
        "format": ANCHOR_FORMAT,
        "version": ANCHOR_VERSION,
        "ledger_id": anchor.ledger_id,
        "seq": anchor.seq,
        "ledger_sha256": anchor.ledger_sha256,
        "key_id": keys.key_id,
    }
    atomic_write_bytes(path, file_json({**body, "hmac": mac(keys.anchor_hmac, body)}), mode=0o600)


def _open_lock_file(lock_path: Path, *, exclusive: bool) -> int | None:
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if exclusive or err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise PrivacyError(
                f"cannot open ledger lock file {lock_path}: {err.strerror or err}"
            ) from err
    # A reader in a folder it cannot write: lock an existing lock file if it can
    # read it; otherwise no writer can be changing the ledger there either (a
    # writer needs that folder writable), so reading unlocked is safe.
    try:
        return os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


@contextlib.contextmanager
def ledger_lock(ledger_path: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold ``<ledger>.lock`` (exclusive for writers, shared for readers).

    Blocks until the other holder is done: a writer holds it only for one
    verification and two small local writes, and the kernel wakes waiters in
    turn, which polling with a timeout would not.
    """
    lock_path = lock_path_for(ledger_path)
    fd = _open_lock_file(lock_path, exclusive=exclusive)
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
