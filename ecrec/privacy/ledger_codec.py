"""Keys and the sealed file envelope of the privacy ledger (see :mod:`ecrec.privacy.ledger`).

The node secret is the content of a key file (:data:`KEY_BYTES` random bytes
made by ``ecrec privacy init``). Three independent keys are derived from it by
HKDF-SHA256 with distinct ``info`` strings: the ledger's HMAC key, the Fernet key
for optional encryption, and the anchor's HMAC key; a fourth derivation gives a
public key id so a wrong key file is named as such rather than as tampering.

The envelope is one JSON object written in exactly one form (sorted keys,
two-space indent, trailing newline); a file that is not byte-identical to that
form is refused, so even a whitespace edit is caught. Its ``hmac`` is
HMAC-SHA256 over the compact canonical JSON of every other envelope field, so
the header (format, version, encryption, key id) is covered as well as the
payload or ciphertext.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ecrec.atomic import fsync_dir
from ecrec.errors import ConfigError, LedgerCorruptError

FORMAT = "ecrec-privacy-ledger"
VERSION = 2
ENCRYPTION = "fernet"
#: Size of the node secret ``ecrec privacy init`` writes, and the least a key file may hold.
KEY_BYTES = 32

_INFO_LEDGER_HMAC = b"ecrec privacy ledger v2: ledger hmac-sha256 key"
_INFO_FERNET = b"ecrec privacy ledger v2: fernet key"
_INFO_ANCHOR_HMAC = b"ecrec privacy ledger v2: anchor hmac-sha256 key"
_INFO_KEY_ID = b"ecrec privacy ledger v2: public key id"


@dataclass(frozen=True, repr=False)
class LedgerKeys:
    """The keys derived from one node secret (``repr`` hides them)."""

    ledger_hmac: bytes
    fernet: bytes
    anchor_hmac: bytes
    key_id: str

    def __repr__(self) -> str:
        return f"LedgerKeys(key_id={self.key_id!r})"


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def derive_keys(secret: bytes) -> LedgerKeys:
    """Split a node secret into independent keys (HKDF; the secret must be random bytes)."""
    return LedgerKeys(
        ledger_hmac=_hkdf(secret, _INFO_LEDGER_HMAC),
        fernet=base64.urlsafe_b64encode(_hkdf(secret, _INFO_FERNET)),
        anchor_hmac=_hkdf(secret, _INFO_ANCHOR_HMAC),
        key_id=_hkdf(secret, _INFO_KEY_ID)[:8].hex(),
    )


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """The node secret in a key file: its bytes, verbatim.

    Nothing is stripped: ``ecrec privacy init`` writes raw random bytes, which
    may well end in a byte that looks like whitespace. Every component reads
    keys through this, so the same file always yields the same key.
    """
    try:
        key = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read key file {path}: {err.strerror or err}") from err
    if not key:
        raise ConfigError(f"key file {path} is empty")
    if len(key) < KEY_BYTES:
        raise ConfigError(
            f"key file {path} holds {len(key)} bytes; a ledger key needs at least {KEY_BYTES} "
            "random bytes (let `ecrec privacy init` create the key file)"
        )
    return key


def create_key_file(path: Path) -> bytes:
    """Write :data:`KEY_BYTES` fresh random bytes to a new file (mode 0600, parent folders).

    Created exclusively (``O_EXCL``): an existing key is never overwritten.
    """
    secret = secrets.token_bytes(KEY_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise ConfigError(f"cannot create key file {path}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        with contextlib.suppress(OSError):
            path.unlink()
        raise ConfigError(f"cannot write key file {path}: {err.strerror or err}") from err
    fsync_dir(path.parent)
    return secret


# --------------------------------------------------------------------------- #
# Canonical JSON and MACs
# --------------------------------------------------------------------------- #


def canonical_json(obj: Any) -> bytes:
    """The bytes a MAC covers: independent of dict order and file layout."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def file_json(obj: Any) -> bytes:
    """The one layout ledger and anchor files are written in (and must still be in)."""
    text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def parse_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity. Raises ``ValueError`` (also for arrays or
    objects nested past the interpreter's recursion limit, where ``json`` raises
    ``RecursionError``)."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("arrays or objects nested too deeply") from None


def mac(key: bytes, fields: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical_json(fields), hashlib.sha256).hexdigest()


def mac_matches(key: bytes, fields: Mapping[str, Any], claimed: Any) -> bool:
    return isinstance(claimed, str) and hmac.compare_digest(mac(key, fields), claimed)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- #
# The ledger envelope
# --------------------------------------------------------------------------- #


def ledger_corrupt(path: Path, problem: str, *, hint: str | None = None) -> LedgerCorruptError:
    """The one-line refusal for a ledger that fails verification (never touched)."""
    hint = hint or "restore it from a backup; do not delete it"
    return LedgerCorruptError(
        f"privacy ledger {path} failed verification: {problem}; refusing to use it ({hint})"
    )


def encode_ledger(payload: Mapping[str, Any], keys: LedgerKeys, *, encrypt: bool) -> bytes:
    """The file bytes for ``payload``: sealed with the HMAC, optionally Fernet-encrypted."""
    body: dict[str, Any] = {"format": FORMAT, "version": VERSION, "key_id": keys.key_id}
    if encrypt:
        body["encryption"] = ENCRYPTION
        body["ciphertext"] = Fernet(keys.fernet).encrypt(canonical_json(payload)).decode("ascii")
    else:
        body["payload"] = payload
    return file_json({**body, "hmac": mac(keys.ledger_hmac, body)})


def decode_ledger(path: Path, raw: bytes, keys: LedgerKeys) -> tuple[Any, bool]:
    """Verify a ledger file's envelope; return its (unvalidated) payload and whether it was
    encrypted. Every failure is a :class:`LedgerCorruptError` naming ``path``."""
    try:
        envelope = parse_json(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise ledger_corrupt(path, f"not valid JSON (truncated or damaged?): {err}") from err
    if not isinstance(envelope, dict):
        raise ledger_corrupt(path, "not a JSON object")
    if envelope.get("format") != FORMAT:
        raise ledger_corrupt(path, f"unknown format {envelope.get('format')!r}")
    if envelope.get("version") != VERSION:
        older = envelope.get("version") == 1
        raise ledger_corrupt(
            path,
            "version 1 has an unkeyed checksum and cannot be verified"
            if older
            else f"unsupported version {envelope.get('version')!r}",
            hint="start a new ledger with `ecrec privacy init`, carrying the spend over by hand"
            if older
            else None,
        )
    body = {name: value for name, value in envelope.items() if name != "hmac"}
    if envelope.get("key_id") != keys.key_id:
        raise ledger_corrupt(
            path,
            f"it was sealed with key id {envelope.get('key_id')!r} but the key file gives "
            f"{keys.key_id!r} (wrong key file, or another node's ledger)",
            hint="give this ledger's own key file",
        )
    if not mac_matches(keys.ledger_hmac, body, envelope.get("hmac")):
        raise ledger_corrupt(path, "HMAC mismatch (the file was modified outside ecrec)")
    if raw != file_json(envelope):
        raise ledger_corrupt(path, "not byte-identical to the form ecrec writes (reformatted)")

    encryption = envelope.get("encryption")
    if encryption is None:
        if "payload" not in envelope or "ciphertext" in envelope:
            raise ledger_corrupt(path, "a plain ledger must hold a payload and no ciphertext")
        return envelope["payload"], False
    if encryption != ENCRYPTION or not isinstance(envelope.get("ciphertext"), str):
        raise ledger_corrupt(path, f"unknown encryption {encryption!r} or malformed ciphertext")
    try:
        plaintext = Fernet(keys.fernet).decrypt(envelope["ciphertext"].encode("ascii"))
        return parse_json(plaintext), True
    except (InvalidToken, UnicodeError, ValueError) as err:
        raise ledger_corrupt(path, f"cannot decrypt the payload: {err or 'invalid token'}") from err
