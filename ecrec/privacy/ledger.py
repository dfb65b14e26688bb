"""The per-node privacy ledger: what a merchant's data has already spent.

The ledger is the node's memory of its privacy spend, so it must survive
crashes and restarts and must fail closed: if it cannot be read and verified,
the node refuses to train (:class:`~ecrec.errors.LedgerCorruptError`); it is
never reset or overwritten, because a fresh ledger would silently grant a fresh
budget.

File format (JSON)::

    {"format": "ecrec-privacy-ledger", "version": 1,
     "sha256": "<hex of the canonical payload JSON>", "payload": {...}}

or, when a key is given, the payload is Fernet-encrypted with a key derived by
HKDF-SHA256 from the caller's key bytes and a per-ledger random salt::

    {"format": ..., "version": 1, "encryption": "fernet-hkdf-sha256",
     "salt": "<hex>", "sha256": "<hex of the ciphertext>", "ciphertext": "..."}

HKDF is not a password hash: the key should be high-entropy bytes (a key
file), not a memorable password.

The payload holds ``merchant_id, budget_epsilon, delta, accountant,
created_at, entries, declined, budget_changes``; every entry's
``epsilon_after`` is recomputed and checked on load, so an edit that also fixes
the checksum is still caught.

Writes are atomic and durable (temp file in the same folder, fsync,
``os.replace``, fsync of the folder), and refuse to proceed if the file changed
on disk since this process last read or wrote it (two writers would otherwise
lose a round).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ecrec.atomic import atomic_write_bytes
from ecrec.errors import BudgetExceededError, ConfigError, LedgerCorruptError, PrivacyError
from ecrec.privacy.accounting import (
    ACCOUNTANTS,
    Accountant,
    RoundSpend,
    epsilon_for_history,
    epsilon_trajectory,
)

FORMAT = "ecrec-privacy-ledger"
VERSION = 1
ENCRYPTION = "fernet-hkdf-sha256"
_HKDF_INFO = b"ecrec privacy ledger v1 fernet key"
#: Relative tolerance when re-checking recorded ε against a recomputation.
EPSILON_RTOL = 1e-9

__all__ = ["PrivacyLedger", "RoundCheck", "read_key_file"]


@dataclass(frozen=True)
class RoundCheck:
    """Whether a planned round fits in the budget, and what it would cost."""

    affordable: bool
    epsilon_before: float
    epsilon_after: float
    budget: float
    reason: str


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a ledger key file; surrounding whitespace (a trailing newline) is ignored.

    Every component that opens a ledger should read keys through this, so the
    same file always yields the same key.
    """
    try:
        key = Path(path).read_bytes().strip()
    except OSError as err:
        raise ConfigError(f"cannot read key file {path}: {err.strerror or err}") from err
    if not key:
        raise ConfigError(f"key file {path} is empty")
    return key


# --------------------------------------------------------------------------- #
# Encoding helpers
# --------------------------------------------------------------------------- #


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _canonical(payload: Mapping[str, Any]) -> bytes:
    """The byte string the checksum covers: independent of file formatting."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fernet(key: bytes, salt: bytes) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO).derive(key)
    return Fernet(base64.urlsafe_b64encode(derived))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _loads(data: bytes | str) -> Any:
    return json.loads(data, parse_constant=_reject_constant)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= EPSILON_RTOL * max(abs(a), abs(b))


# --------------------------------------------------------------------------- #
# Payload validation
# --------------------------------------------------------------------------- #


def _validate_payload(payload: Any, fail: Callable[[str], Exception]) -> list[RoundSpend]:
    """Check the payload's shape and recompute every ε; return the history.

    ``fail(problem)`` builds the exception to raise, so the same checks serve a
    file on disk (LedgerCorruptError) and a state dict (PrivacyError).
    """
    if not isinstance(payload, dict):
        raise fail("payload is not a JSON object")
    expected = {
        "merchant_id": str,
        "budget_epsilon": float,
        "delta": float,
        "accountant": str,
        "created_at": str,
        "entries": list,
        "declined": list,
        "budget_changes": list,
    }
    for field, kind in expected.items():
        if field not in payload:
            raise fail(f"payload has no {field!r}")
        value = payload[field]
        ok = (
            _is_number(value) and math.isfinite(value)
            if kind is float
            else (isinstance(value, kind))
        )
        if not ok:
            raise fail(f"payload field {field!r} has the wrong type")
    if not payload["budget_epsilon"] > 0:
        raise fail("budget_epsilon is not positive")
    if not 0 < payload["delta"] < 1:
        raise fail("delta is not in (0, 1)")
    if payload["accountant"] not in ACCOUNTANTS:
        raise fail(f"unknown accountant {payload['accountant']!r}")

    history: list[RoundSpend] = []
    seen: set[int] = set()
    for i, entry in enumerate(payload["entries"]):
        where = f"entries[{i}]"
        if not isinstance(entry, dict):
            raise fail(f"{where} is not an object")
        for field in (
            "round",
            "noise_multiplier",
            "sample_rate",
            "steps",
            "epsilon_after",
            "recorded_at",
        ):
            if field not in entry:
                raise fail(f"{where} has no {field!r}")
        rnd = entry["round"]
        if not _is_int(rnd) or rnd < 0:
            raise fail(f"{where} has an invalid round number {rnd!r}")
        if rnd in seen:
            raise fail(f"round {rnd} is recorded twice")
        seen.add(rnd)
        if not (_is_number(entry["epsilon_after"]) and math.isfinite(entry["epsilon_after"])):
            raise fail(f"{where} has an invalid epsilon_after")
        if not isinstance(entry["recorded_at"], str):
            raise fail(f"{where} has an invalid recorded_at")
        try:
            history.append(
                RoundSpend(
                    noise_multiplier=entry["noise_multiplier"],
                    sample_rate=entry["sample_rate"],
                    steps=entry["steps"],
                )
            )
        except PrivacyError as err:
            raise fail(f"{where}: {err}") from err

    for i, item in enumerate(payload["declined"]):
        if not (
            isinstance(item, dict)
            and _is_int(item.get("round"))
            and isinstance(item.get("reason"), str)
            and isinstance(item.get("at"), str)
        ):
            raise fail(f"declined[{i}] is malformed")
    for i, item in enumerate(payload["budget_changes"]):
        if not (
            isinstance(item, dict)
            and _is_number(item.get("from"))
            and _is_number(item.get("to"))
            and isinstance(item.get("at"), str)
        ):
            raise fail(f"budget_changes[{i}] is malformed")

    try:
        recomputed = epsilon_trajectory(
            history, delta=payload["delta"], accountant=payload["accountant"]
        )
    except PrivacyError as err:
        raise fail(f"cannot recompute ε: {err}") from err
    for entry, eps in zip(payload["entries"], recomputed, strict=True):
        if not _close(float(entry["epsilon_after"]), eps):
            raise fail(
                f"round {entry['round']} records ε={entry['epsilon_after']!r} but its history "
                f"gives ε={eps!r}"
            )
    return history


# --------------------------------------------------------------------------- #
# The ledger
# --------------------------------------------------------------------------- #


class PrivacyLedger:
    """A merchant node's privacy spend, persisted and verified (fail closed).

    Get one with :meth:`open` (node side: creates or loads, applies the
    merchant's budget) or :meth:`load` (read-only use such as ``ecrec privacy
    show``). Every mutating method writes the file before it changes the
    in-memory state, so memory never claims more or less than the disk.
    """

    def __init__(
        self,
        *,
        path: Path,
        payload: dict[str, Any],
        history: list[RoundSpend],
        key: bytes | None,
        salt: bytes | None,
        disk_bytes: bytes | None,
    ) -> None:
        self._path = path
        self._payload = payload
        self._history = history
        self._key = key
        self._salt = salt
        self._disk_bytes = disk_bytes
        self._spent = epsilon_for_history(
            history, delta=payload["delta"], accountant=payload["accountant"]
        )

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        budget_epsilon: float,
        delta: float,
        accountant: Accountant = "rdp",
        key: bytes | None = None,
        merchant_id: str = "",
    ) -> PrivacyLedger:
        """Create the ledger at ``path`` (and its folders) or load and verify it.

        An existing ledger keeps its delta and accountant (changing them would
        change every past ε: :class:`PrivacyError`). The budget is the
        merchant's to set: a different ``budget_epsilon`` replaces the stored
        one and the change is recorded in ``budget_changes``.
        """
        path = Path(path)
        if not (
            _is_number(budget_epsilon) and math.isfinite(budget_epsilon) and budget_epsilon > 0
        ):
            raise PrivacyError(
                f"budget_epsilon must be a finite number > 0, got {budget_epsilon!r}"
            )
        if not (_is_number(delta) and 0 < delta < 1):
            raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
        if accountant not in ACCOUNTANTS:
            raise PrivacyError(
                f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}"
            )
        if not isinstance(merchant_id, str):
            raise PrivacyError(f"merchant_id must be a string, got {merchant_id!r}")
        cls._check_key(key)

        if not os.path.lexists(path):
            payload = {
                "merchant_id": merchant_id,
                "budget_epsilon": float(budget_epsilon),
                "delta": float(delta),
                "accountant": accountant,
                "created_at": _now(),
                "entries": [],
                "declined": [],
                "budget_changes": [],
            }
            ledger = cls(
                path=path,
                payload=payload,
                history=[],
                key=key,
                salt=os.urandom(16) if key is not None else None,
                disk_bytes=None,
            )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise PrivacyError(f"cannot create folder for ledger {path}: {err}") from err
            ledger._write(payload, history=[], spent=0.0)
            return ledger

        ledger = cls.load(path, key=key)
        stored = ledger._payload
        if merchant_id and merchant_id != stored["merchant_id"]:
            raise PrivacyError(
                f"ledger {path} belongs to merchant {stored['merchant_id']!r}, not {merchant_id!r}"
            )
        if float(delta) != stored["delta"]:
            raise PrivacyError(
                f"ledger {path} accounts at delta={stored['delta']!r}; opening it with "
                f"delta={delta!r} would change every recorded ε"
            )
        if accountant != stored["accountant"]:
            raise PrivacyError(
                f"ledger {path} uses the {stored['accountant']} accountant; opening it with "
                f"{accountant} would change every recorded ε"
            )
        if float(budget_epsilon) != stored["budget_epsilon"]:
            new = copy.deepcopy(stored)
            new["budget_changes"].append(
                {"from": stored["budget_epsilon"], "to": float(budget_epsilon), "at": _now()}
            )
            new["budget_epsilon"] = float(budget_epsilon)
            ledger._write(new, history=ledger._history, spent=ledger._spent)
        return ledger

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, key: bytes | None = None) -> PrivacyLedger:
        """Load and verify an existing ledger without changing it."""
        path = Path(path)
        cls._check_key(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError as err:
            raise PrivacyError(f"no privacy ledger at {path}") from err
        except OSError as err:
            raise PrivacyError(f"cannot read privacy ledger {path}: {err}") from err
        payload, salt = cls._decode(path, raw, key)
        history = _validate_payload(payload, lambda problem: cls._corrupt(path, problem))
        return cls(path=path, payload=payload, history=history, key=key, salt=salt, disk_bytes=raw)

    @staticmethod
    def _check_key(key: bytes | None) -> None:
        if key is not None and (not isinstance(key, bytes) or not key):
            raise PrivacyError("a ledger key must be non-empty bytes")

    @staticmethod
    def _corrupt(
        path: Path, problem: str, *, hint: str = "restore it from a backup; do not delete it"
    ) -> LedgerCorruptError:
        return LedgerCorruptError(
            f"privacy ledger {path} failed verification: {problem}; refusing to use it ({hint})"
        )

    @classmethod
    def _decode(cls, path: Path, raw: bytes, key: bytes | None) -> tuple[Any, bytes | None]:
        corrupt = lambda problem: cls._corrupt(path, problem)  # noqa: E731
        try:
            envelope = _loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise corrupt(f"not valid JSON (truncated or damaged?): {err}") from err
        if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
            raise corrupt("not an ecrec privacy ledger (wrong or missing 'format')")
        if envelope.get("version") != VERSION:
            raise corrupt(f"unsupported ledger version {envelope.get('version')!r}")
        checksum = envelope.get("sha256")
        if not isinstance(checksum, str):
            raise corrupt("missing checksum")
        encrypted = "ciphertext" in envelope
        if encrypted == ("payload" in envelope):
            raise corrupt("must hold exactly one of 'payload' and 'ciphertext'")

        if not encrypted:
            if key is not None:
                raise cls._corrupt(
                    path,
                    "the ledger is not encrypted but a key was given",
                    hint="open it without a key",
                )
            payload = envelope["payload"]
            try:
                canonical = _canonical(payload)
            except (TypeError, ValueError) as err:
                raise corrupt(f"payload cannot be encoded: {err}") from err
            if _sha256(canonical) != checksum:
                raise corrupt("checksum mismatch (the file was modified outside ecrec)")
            return payload, None

        if key is None:
            raise cls._corrupt(
                path, "the ledger is encrypted and no key was given", hint="give its key"
            )
        if envelope.get("encryption") != ENCRYPTION:
            raise corrupt(f"unknown encryption {envelope.get('encryption')!r}")
        ciphertext, salt_hex = envelope["ciphertext"], envelope.get("salt")
        if not isinstance(ciphertext, str) or not isinstance(salt_hex, str):
            raise corrupt("malformed ciphertext or salt")
        if _sha256(ciphertext.encode("utf-8")) != checksum:
            raise corrupt("checksum mismatch (the file was modified outside ecrec)")
        try:
            salt = bytes.fromhex(salt_hex)
            plaintext = _fernet(key, salt).decrypt(ciphertext.encode("ascii"))
        except (ValueError, InvalidToken) as err:
            raise cls._corrupt(
                path,
                "cannot decrypt: wrong key or tampered ciphertext",
                hint="check the key; if it is right, restore the ledger from a backup",
            ) from err
        try:
            return _loads(plaintext.decode("utf-8")), salt
        except (UnicodeDecodeError, ValueError) as err:
            raise corrupt(f"decrypted payload is not valid JSON: {err}") from err

    # ----------------------------------------------------------------- writing

    def _encode(self, payload: Mapping[str, Any]) -> bytes:
        canonical = _canonical(payload)
        envelope: dict[str, Any]
        if self._key is None:
            envelope = {
                "format": FORMAT,
                "version": VERSION,
                "sha256": _sha256(canonical),
                "payload": payload,
            }
        else:
            assert self._salt is not None
            token = _fernet(self._key, self._salt).encrypt(canonical).decode("ascii")
            envelope = {
                "format": FORMAT,
                "version": VERSION,
                "encryption": ENCRYPTION,
                "salt": self._salt.hex(),
                "sha256": _sha256(token.encode("ascii")),
                "ciphertext": token,
            }
        return (json.dumps(envelope, indent=2, allow_nan=False) + "\n").encode("utf-8")

    def _write(self, payload: dict[str, Any], *, history: list[RoundSpend], spent: float) -> None:
        """Persist ``payload`` and only then adopt it as the in-memory state.

        ``history`` and ``spent`` are the payload's, already computed by the
        caller (recomputing them here would cost a PRV pass per round).
        """
        data = self._encode(payload)
        try:
            current = self._path.read_bytes()
        except FileNotFoundError:
            current = None
        except OSError as err:
            raise PrivacyError(f"cannot read privacy ledger {self._path}: {err}") from err
        if current != self._disk_bytes:
            raise PrivacyError(
                f"privacy ledger {self._path} changed on disk since this process read it "
                "(another process using it?); reopen it before recording"
            )
        try:
            atomic_write_bytes(self._path, data, mode=0o600)  # private to the node
        except OSError as err:
            raise PrivacyError(
                f"cannot write privacy ledger {self._path}: {err}; nothing was recorded"
            ) from err
        self._payload, self._history, self._disk_bytes, self._spent = (
            payload,
            list(history),
            data,
            spent,
        )

    # ------------------------------------------------------------- properties

    @property
    def path(self) -> Path:
        return self._path

    @property
    def merchant_id(self) -> str:
        return self._payload["merchant_id"]

    @property
    def budget_epsilon(self) -> float:
        return float(self._payload["budget_epsilon"])

    @property
    def delta(self) -> float:
        return float(self._payload["delta"])

    @property
    def accountant(self) -> Accountant:
        return self._payload["accountant"]

    @property
    def encrypted(self) -> bool:
        return self._key is not None

    @property
    def history(self) -> list[RoundSpend]:
        return list(self._history)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._payload["entries"])

    @property
    def declined(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._payload["declined"])

    @property
    def budget_changes(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._payload["budget_changes"])

    @property
    def rounds(self) -> list[int]:
        return [entry["round"] for entry in self._payload["entries"]]

    def __repr__(self) -> str:
        return (
            f"PrivacyLedger({str(self._path)!r}, merchant={self.merchant_id!r}, "
            f"spent={self._spent:.4g}, budget={self.budget_epsilon:g})"
        )

    # ------------------------------------------------------------- accounting

    def spent_epsilon(self) -> float:
        """ε of the whole recorded history under the ledger's accountant."""
        return self._spent

    def remaining_epsilon(self) -> float:
        """Budget left (0 when spent, e.g. after the merchant lowered the budget)."""
        return max(0.0, self.budget_epsilon - self._spent)

    def check_round(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> RoundCheck:
        """Would this round fit in the budget? Nothing is recorded."""
        spend = RoundSpend(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        before = self._spent
        after = epsilon_for_history(
            [*self._history, spend], delta=self.delta, accountant=self.accountant
        )
        budget = self.budget_epsilon
        if after <= budget:
            reason = (
                f"round would take ε from {before:.6g} to {after:.6g}, within the "
                f"budget of {budget:g}"
            )
            return RoundCheck(True, before, after, budget, reason)
        reason = (
            f"round would take ε from {before:.6g} to {after:.6g}, over the budget of "
            f"{budget:g} by {after - budget:.6g}"
        )
        return RoundCheck(False, before, after, budget, reason)

    def record_round(
        self, *, round: int, noise_multiplier: float, sample_rate: float, steps: int
    ) -> float:
        """Record a round's spend durably and return ε after it.

        Refuses (and records nothing) when the round number is already recorded
        (:class:`PrivacyError`) or the round would overspend
        (:class:`BudgetExceededError`, saying by how much).
        """
        if not _is_int(round) or round < 0:
            raise PrivacyError(f"round must be an integer >= 0, got {round!r}")
        if round in self.rounds:
            raise PrivacyError(f"round {round} is already recorded in privacy ledger {self._path}")
        check = self.check_round(
            noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps
        )
        if not check.affordable:
            raise BudgetExceededError(
                f"merchant {self.merchant_id or '(unnamed)'} refuses round {round}: "
                f"{check.reason}; nothing recorded"
            )
        spend = RoundSpend(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        new = copy.deepcopy(self._payload)
        new["entries"].append(
            {
                "round": round,
                "noise_multiplier": spend.noise_multiplier,
                "sample_rate": spend.sample_rate,
                "steps": spend.steps,
                "epsilon_after": check.epsilon_after,
                "recorded_at": _now(),
            }
        )
        self._write(new, history=[*self._history, spend], spent=check.epsilon_after)
        return check.epsilon_after

    def record_decline(self, *, round: int, reason: str) -> None:
        """Record that the node refused a round (and why), for the privacy report."""
        if not _is_int(round) or round < 0:
            raise PrivacyError(f"round must be an integer >= 0, got {round!r}")
        new = copy.deepcopy(self._payload)
        new["declined"].append({"round": round, "reason": str(reason), "at": _now()})
        self._write(new, history=self._history, spent=self._spent)

    def epsilon_by_round(self, accountant: Accountant | None = None) -> list[tuple[int, float]]:
        """Cumulative ε after each recorded round, optionally under the other accountant."""
        if accountant is None or accountant == self.accountant:
            return [(e["round"], float(e["epsilon_after"])) for e in self._payload["entries"]]
        eps = epsilon_trajectory(self._history, delta=self.delta, accountant=accountant)
        return list(zip(self.rounds, eps, strict=True))

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the ledger's payload (e.g. for a checkpoint)."""
        return copy.deepcopy(self._payload)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt a saved state that extends this ledger's history, and persist it.

        Refused (:class:`PrivacyError`) when the state belongs to another
        merchant, uses another delta or accountant, is inconsistent, or would
        forget or rewrite recorded rounds. The node's current budget is kept: a
        restored state must never raise it.
        """
        state = copy.deepcopy(dict(state))
        # Identity first: a state for another merchant or accounting is the wrong
        # state, whatever else is in it.
        for field in ("merchant_id", "delta", "accountant"):
            if state.get(field) != self._payload[field]:
                raise PrivacyError(
                    f"refusing ledger state: its {field} is {state.get(field)!r}, this "
                    f"ledger's is {self._payload[field]!r}"
                )
        history = _validate_payload(state, lambda p: PrivacyError(f"refusing ledger state: {p}"))
        ours = self._payload["entries"]
        theirs = state["entries"]
        if len(theirs) < len(ours):
            raise PrivacyError(
                f"refusing ledger state: it has {len(theirs)} rounds but {self._path} "
                f"records {len(ours)}; that would forget privacy spend"
            )
        keys = ("round", "noise_multiplier", "sample_rate", "steps", "epsilon_after")
        for mine, other in zip(ours, theirs, strict=False):
            if any(mine[k] != other[k] for k in keys):
                raise PrivacyError(
                    f"refusing ledger state: it rewrites recorded round {mine['round']}"
                )
        new = copy.deepcopy(self._payload)
        new["entries"] = theirs
        new["declined"] = new["declined"] + [
            d for d in state["declined"] if d not in new["declined"]
        ]
        spent = epsilon_for_history(history, delta=self.delta, accountant=self.accountant)
        self._write(new, history=history, spent=spent)

    def summary(self) -> dict[str, Any]:
        """JSON-ready overview for ``ecrec privacy show`` and reports."""
        return {
            "path": str(self._path),
            "merchant": self.merchant_id,
            "budget": self.budget_epsilon,
            "spent": self._spent,
            "remaining": self.remaining_epsilon(),
            "rounds": len(self._history),
            "delta": self.delta,
            "accountant": self.accountant,
            "encrypted": self.encrypted,
            "declined": len(self._payload["declined"]),
            "budget_changes": self.budget_changes,
            "epsilon_by_round": [
                {"round": r, "epsilon": eps} for r, eps in self.epsilon_by_round()
            ],
        }
