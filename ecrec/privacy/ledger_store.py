"""Reading, verifying and writing a privacy ledger's files (for :mod:`ecrec.privacy.ledger`).

**Files.** The ledger (``path``); the key file (the node secret, 32 random
bytes, 0600); the anchor (default: the key file's name plus ``.anchor``); and
``<ledger>.lock``. The ledger is HMAC-sealed JSON, optionally Fernet-encrypted
(:mod:`ecrec.privacy.ledger_codec`)::

    {"format": "ecrec-privacy-ledger", "version": 2, "key_id": "<hex>",
     "payload": {...}, "hmac": "<hex>"}
    {"format": ..., "version": 2, "key_id": ..., "encryption": "fernet",
     "ciphertext": "<fernet token of the payload>", "hmac": "<hex>"}

The payload holds ``ledger_id`` (random, set at init), ``seq`` (write counter:
1 at init, +1 on every write), ``merchant_id, budget_epsilon, delta,
accountant, unit, created_at, entries, budget_changes, reanchors``; each entry
is ``round, noise_multiplier, sample_rate, steps, epsilon_after, recorded_at``
(:mod:`ecrec.privacy.ledger_payload`). The anchor (:mod:`ecrec.privacy.anchor`)
holds the ``ledger_id``, ``seq`` and SHA-256 of the ledger bytes of the latest
write under its own HMAC.

**Verification** (any failure refuses and writes nothing): the envelope must be
byte-identical to what ecrec writes, carry this key's id and a matching HMAC;
the payload's shape and every recomputed ε must check; then the anchor must
exist, verify, name this ``ledger_id``, and:

* ledger ``seq`` == anchor ``seq`` with the anchor's digest: current;
* ledger ``seq`` == anchor ``seq`` + 1: **the crash rule**. Every write goes
  ledger first (atomic write, fsync), then anchor, so a crash between the two
  leaves exactly this. The ledger is accepted (its HMAC proves a key holder
  wrote it) and a writer (``open``, ``record_round`` ...) rolls the anchor
  forward before writing again; a read-only ``load`` accepts it and writes
  nothing. A recorded round is on disk before the anchor moves and before
  ``record_round`` returns, so a crash never under-counts spend;
* ledger ``seq`` < anchor ``seq``, or equal with another digest: an older copy
  was restored (rolled back) or forked: :class:`LedgerCorruptError`;
* ledger ``seq`` > anchor ``seq`` + 1: the anchor was rolled back: refused;
* no anchor: :class:`LedgerMissingError` naming ``ecrec privacy init
  --reanchor`` (:meth:`PrivacyLedger.reanchor`), the merchant's explicit act,
  possible only while no anchor exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ecrec.atomic import atomic_write_bytes
from ecrec.errors import (
    ConfigError,
    LedgerCorruptError,
    LedgerExistsError,
    LedgerMissingError,
    PrivacyError,
)
from ecrec.privacy.anchor import Anchor, default_anchor_path, read_anchor, write_anchor
from ecrec.privacy.ledger_codec import (
    LedgerKeys,
    decode_ledger,
    encode_ledger,
    ledger_corrupt,
    sha256_hex,
)
from ecrec.privacy.ledger_payload import VerifiedPayload, verify_payload


@dataclass(frozen=True)
class Snapshot:
    """One verified read (or write) of the ledger file."""

    raw: bytes
    state: VerifiedPayload
    encrypted: bool


def _same_file(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


@dataclass(frozen=True)
class LedgerPaths:
    """Where a ledger, its key and its anchor live."""

    ledger: Path
    key_file: Path
    anchor: Path

    @classmethod
    def resolve(
        cls, path: str | os.PathLike[str], key_file: Path, anchor_path: Path | None
    ) -> LedgerPaths:
        ledger, key_file = Path(path), Path(key_file)
        anchor = Path(anchor_path) if anchor_path is not None else default_anchor_path(key_file)
        if _same_file(anchor, ledger) or _same_file(anchor, key_file):
            raise ConfigError(
                f"ledger {ledger}, key file {key_file} and anchor {anchor} must differ"
            )
        if _same_file(ledger, key_file):
            raise ConfigError(f"ledger {ledger} and key file {key_file} must differ")
        return cls(ledger=ledger, key_file=key_file, anchor=anchor)

    def require_ledger(self) -> None:
        """Missing ledger: :class:`LedgerMissingError`, never a fresh one."""
        if os.path.lexists(self.ledger):
            return
        if os.path.lexists(self.anchor):
            raise LedgerMissingError(
                f"no privacy ledger at {self.ledger}, but its anchor {self.anchor} exists: the "
                "ledger was deleted or moved (or this is the wrong path); refusing to start a "
                "fresh budget (restore the ledger, or give its path)"
            )
        raise LedgerMissingError(
            f"no privacy ledger at {self.ledger}; the merchant creates one explicitly with "
            f"`ecrec privacy init --ledger {self.ledger} --merchant ID --budget-epsilon E "
            f"--key-file {self.key_file}`"
        )

    def refuse_existing(self) -> None:
        """``init`` never starts over an existing ledger or anchor."""
        if os.path.lexists(self.ledger):
            raise LedgerExistsError(
                f"privacy ledger {self.ledger} already exists; refusing to start a fresh budget "
                "over the spend it records (open it; if its anchor is lost, use --reanchor)"
            )
        if os.path.lexists(self.anchor):
            raise LedgerExistsError(
                f"ledger anchor {self.anchor} already exists (this key file anchors another "
                "ledger, or this ledger was deleted); refusing to start a fresh budget"
            )


def read_ledger(paths: LedgerPaths, keys: LedgerKeys, *, known: Snapshot | None = None) -> Snapshot:
    """Read and verify the ledger file (not its anchor).

    ``known`` is what this process last verified or wrote: the same bytes need
    no second ε pass (a writer re-reads before every round).
    """
    try:
        raw = paths.ledger.read_bytes()
    except FileNotFoundError:
        paths.require_ledger()
        raise
    except OSError as err:
        raise PrivacyError(
            f"cannot read privacy ledger {paths.ledger}: {err.strerror or err}"
        ) from err
    if known is not None and raw == known.raw:
        return known
    payload, encrypted = decode_ledger(paths.ledger, raw, keys)
    state = verify_payload(payload, lambda p: ledger_corrupt(paths.ledger, p), stored=True)
    return Snapshot(raw=raw, state=state, encrypted=encrypted)


def check_merchant(paths: LedgerPaths, snapshot: Snapshot, merchant_id: str | None) -> None:
    stored = snapshot.state.payload["merchant_id"]
    if merchant_id is not None and merchant_id != stored:
        raise LedgerCorruptError(
            f"privacy ledger {paths.ledger} belongs to merchant {stored!r}, not {merchant_id!r}; "
            "refusing to use another merchant's ledger"
        )


def check_anchor(
    paths: LedgerPaths, keys: LedgerKeys, snapshot: Snapshot, *, roll_forward: bool
) -> None:
    """Rollback detection against the anchor, with the crash rule (module docstring)."""
    path, anchor_path, state = paths.ledger, paths.anchor, snapshot.state
    anchor = read_anchor(anchor_path, keys)
    ledger_id, seq = state.payload["ledger_id"], state.payload["seq"]
    if anchor is None:
        raise LedgerMissingError(
            f"the anchor {anchor_path} of privacy ledger {path} is missing; refusing to use the "
            "ledger (without it an older copy cannot be told from the current one). Only if you "
            f"know this ledger is current, re-anchor it: `ecrec privacy init --reanchor --ledger "
            f"{path} --merchant ID --key-file {paths.key_file} --anchor {anchor_path}`"
        )
    if anchor.ledger_id != ledger_id:
        raise ledger_corrupt(
            path,
            f"its anchor {anchor_path} belongs to another ledger ({anchor.ledger_id[:12]}..., "
            f"this is {ledger_id[:12]}...): a ledger copied from elsewhere, or the wrong anchor",
            hint="give this ledger's own anchor, or restore this node's ledger",
        )
    digest = sha256_hex(snapshot.raw)
    if seq == anchor.seq and digest == anchor.ledger_sha256:
        return
    if seq == anchor.seq:
        raise ledger_corrupt(
            path, f"forked: its write {seq} is not the write {seq} anchor {anchor_path} sealed"
        )
    if seq == anchor.seq + 1:  # the crash rule: crashed between the ledger and anchor writes
        if roll_forward:
            try:
                write_anchor(anchor_path, Anchor(ledger_id, seq, digest), keys)
            except OSError as err:
                raise PrivacyError(
                    f"cannot roll anchor {anchor_path} forward to write {seq}: {err}"
                ) from err
        return
    if seq < anchor.seq:
        raise ledger_corrupt(
            path,
            f"rolled back: this copy is write {seq} (ε={state.spent:.6g} "
            f"({state.payload['accountant']}) over "
            f"{len(state.history)} rounds) but its anchor {anchor_path} records write "
            f"{anchor.seq}; an older copy of the ledger was restored",
            hint="restore the latest ledger; re-anchoring an older copy forgets spend",
        )
    raise ledger_corrupt(
        path,
        f"it is write {seq} but its anchor {anchor_path} records only write {anchor.seq}: the "
        "anchor was rolled back or replaced",
        hint="restore the latest anchor",
    )


def write_ledger(
    paths: LedgerPaths, keys: LedgerKeys, state: VerifiedPayload, *, encrypt: bool
) -> Snapshot:
    """Write ``state`` (its ``seq`` already advanced) atomically and durably; the anchor
    is :func:`advance_anchor`'s job, right after. Call with the exclusive lock held.

    A failure leaves the old file (:class:`PrivacyError` saying nothing was recorded).
    """
    data = encode_ledger(state.payload, keys, encrypt=encrypt)
    try:
        atomic_write_bytes(paths.ledger, data, mode=0o600)  # private to the node
    except OSError as err:
        raise PrivacyError(
            f"cannot write privacy ledger {paths.ledger}: {err}; nothing was recorded"
        ) from err
    return Snapshot(raw=data, state=state, encrypted=encrypt)


def advance_anchor(paths: LedgerPaths, keys: LedgerKeys, written: Snapshot) -> None:
    """Point the anchor at the write just made. A failure here is the crash rule's case:
    the ledger *is* written, and the next writer rolls the anchor forward."""
    payload = written.state.payload
    anchor = Anchor(payload["ledger_id"], payload["seq"], sha256_hex(written.raw))
    try:
        write_anchor(paths.anchor, anchor, keys)
    except OSError as err:
        raise PrivacyError(
            f"privacy ledger {paths.ledger} was written (write {payload['seq']}) but its anchor "
            f"{paths.anchor} could not be advanced: {err}; the next open rolls it forward"
        ) from err
