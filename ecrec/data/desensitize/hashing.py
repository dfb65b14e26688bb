"""Keyed shopper-id hashes (HMAC-SHA256) and the per-dataset key files they need."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
from pathlib import Path

import pandas as pd

from ecrec.atomic import fsync_dir
from ecrec.errors import ConfigError, DataError

#: Bytes of secret in a per-dataset user-id hash key (HMAC-SHA256 key size).
HASH_KEY_BYTES = 32
#: Shortest key :func:`hash_user_id` accepts.
MIN_HASH_KEY_BYTES = 16
#: Hex characters of HMAC-SHA256 kept in ``user_id_hash`` (128 bits).
USER_ID_HASH_CHARS = 32
USER_ID_HASH_PATTERN = re.compile(rf"[0-9a-f]{{{USER_ID_HASH_CHARS}}}")


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


def _hash_series(values: pd.Series, key: bytes) -> pd.Series:
    """``user_id_hash`` values: missing or blank ids stay missing, never hash to a shared value."""
    mapping: dict[object, str] = {}
    for value in pd.unique(values.dropna()):
        text = str(value).strip()
        if text:
            mapping[value] = hash_user_id(text, key=key)
    return pd.Series(values.map(mapping), index=values.index, dtype="str")
