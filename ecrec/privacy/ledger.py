"""The per-node privacy ledger: what a merchant's data has already spent. It fails closed.

A node that cannot read *and verify* its ledger refuses to train; nothing here
ever starts a ledger on its own. :meth:`PrivacyLedger.init` is the merchant's
explicit act; :meth:`PrivacyLedger.open` of a missing ledger raises
:class:`~ecrec.errors.LedgerMissingError`, because a fresh ledger is a fresh
budget. The ledger is spend-only: declined rounds go to the node's journal.

Integrity is keyed: an HMAC-SHA256 with a key derived (HKDF) from the node
secret in the key file seals the ledger; an edited, truncated, re-summed or
cleared ledger, one sealed with another key, or another merchant's, is refused
(:class:`~ecrec.errors.LedgerCorruptError`) and left untouched. Rollback to an
older, validly sealed copy is caught by a monotonic anchor kept outside the
ledger file; concurrent writers are serialised by ``flock``. The file format,
the anchor checks and the **crash rule** (ledger written first, then anchor; a
ledger exactly one write ahead of its anchor is a crash between the two and is
rolled forward) are specified in :mod:`ecrec.privacy.ledger_store`.

**Limits.** The anchor detects restoring an older copy of the *ledger*. A
rollback of ledger, key file and anchor together (a snapshot of everything)
cannot be detected locally, and whoever holds the key file can seal anything.
The merchant should therefore keep the key file and anchor on different storage
from the ledger (and out of the ledger's backups), and guard the key file.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecrec.errors import BudgetExceededError, PrivacyError
from ecrec.privacy.accounting import (
    Accountant,
    RoundSpend,
    epsilon_for_history,
    epsilon_trajectory,
)
from ecrec.privacy.anchor import ledger_lock
from ecrec.privacy.ledger_acts import _check_budget, create_ledger, reanchor_ledger
from ecrec.privacy.ledger_codec import (
    LedgerKeys,
    derive_keys,
    ledger_corrupt,
    read_key_file,
)
from ecrec.privacy.ledger_payload import (
    PRIVACY_UNITS,
    PrivacyUnit,
    VerifiedPayload,
    extended_by,
    is_int,
    new_entry,
    now,
)
from ecrec.privacy.ledger_store import (
    LedgerPaths,
    Snapshot,
    advance_anchor,
    check_anchor,
    check_merchant,
    read_ledger,
    write_ledger,
)

__all__ = ["PRIVACY_UNITS", "PrivacyLedger", "PrivacyUnit", "RoundCheck", "read_key_file"]

#: A change to the ledger: the new state from the current one, or ``None`` for no write.
_Change = Callable[[VerifiedPayload], VerifiedPayload | None]


@dataclass(frozen=True)
class RoundCheck:
    """Whether a planned round fits in the budget, and what it would cost."""

    affordable: bool
    epsilon_before: float
    epsilon_after: float
    budget: float
    reason: str


def _round_check(state: VerifiedPayload, spend: RoundSpend) -> RoundCheck:
    payload, before = state.payload, state.spent
    after = epsilon_for_history(
        [*state.history, spend], delta=payload["delta"], accountant=payload["accountant"]
    )
    budget = float(payload["budget_epsilon"])
    move = f"round would take ε ({payload['accountant']}) from {before:.6g} to {after:.6g}"
    if after <= budget:
        return RoundCheck(True, before, after, budget, f"{move}, within the budget of {budget:g}")
    reason = f"{move}, over the budget of {budget:g} by {after - budget:.6g}"
    return RoundCheck(False, before, after, budget, reason)


class PrivacyLedger:
    """A merchant node's privacy spend, persisted, sealed and anchored (fail closed).

    Get one with :meth:`init` (the merchant creates it), :meth:`open` (node
    side) or :meth:`load` (read-only view). Every change happens under the
    ledger's lock against the file as it is on disk, and is written before the
    in-memory state adopts it.
    """

    def __init__(self, *, paths: LedgerPaths, keys: LedgerKeys, snapshot: Snapshot) -> None:
        self._paths = paths
        self._keys = keys
        self._snap = snapshot

    # --------------------------------------------------------- merchant acts

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        *,
        merchant_id: str,
        budget_epsilon: float,
        delta: float,
        accountant: Accountant,
        unit: PrivacyUnit,
        key_file: Path,
        anchor_path: Path | None = None,
        encrypt: bool = False,
    ) -> PrivacyLedger:
        """The merchant's explicit act: create the ledger (write 1) and its anchor.

        Refuses (:class:`LedgerExistsError`) when the ledger or its anchor
        already exists. Creates ``key_file`` (32 random bytes, mode 0600, parent
        folders) when it does not exist, else uses it.
        """
        paths, keys, written = create_ledger(
            path,
            merchant_id=merchant_id,
            budget_epsilon=budget_epsilon,
            delta=delta,
            accountant=accountant,
            unit=unit,
            key_file=key_file,
            anchor_path=anchor_path,
            encrypt=encrypt,
        )
        return cls(paths=paths, keys=keys, snapshot=written)

    @classmethod
    def reanchor(
        cls,
        path: str | os.PathLike[str],
        *,
        key_file: Path,
        merchant_id: str,
        anchor_path: Path | None = None,
    ) -> PrivacyLedger:
        """The merchant's explicit act after losing the anchor: anchor the ledger as it is.

        Verifies the ledger (seal, ε, merchant) and refuses
        (:class:`LedgerExistsError`) while any anchor exists: accepting an older
        ledger over a newer anchor forgets spend, so that takes deleting the
        anchor by hand first. Logged in the payload's ``reanchors``.
        """
        paths, keys, written = reanchor_ledger(
            path, key_file=key_file, merchant_id=merchant_id, anchor_path=anchor_path
        )
        return cls(paths=paths, keys=keys, snapshot=written)

    # --------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        key_file: Path,
        anchor_path: Path | None = None,
        merchant_id: str | None = None,
        budget_epsilon: float | None = None,
    ) -> PrivacyLedger:
        """Node side: load and verify the ledger, or refuse (nothing is ever created).

        Missing ledger or anchor: :class:`LedgerMissingError`; a failed seal, ε,
        anchor or merchant check: :class:`LedgerCorruptError`. A
        ``budget_epsilon`` different from the stored one is the merchant's own
        change: stored, and logged in ``budget_changes``.
        """
        paths = LedgerPaths.resolve(path, key_file, anchor_path)
        budget = None if budget_epsilon is None else _check_budget(budget_epsilon)
        paths.require_ledger()
        keys = derive_keys(read_key_file(paths.key_file))
        with ledger_lock(paths.ledger, exclusive=True):
            current = read_ledger(paths, keys)
            check_merchant(paths, current, merchant_id)
            check_anchor(paths, keys, current, roll_forward=True)
        ledger = cls(paths=paths, keys=keys, snapshot=current)
        if budget is not None and budget != ledger.budget_epsilon:

            def change_budget(state: VerifiedPayload) -> VerifiedPayload | None:
                payload = copy.deepcopy(state.payload)
                if payload["budget_epsilon"] == budget:
                    return None
                change = {"from": payload["budget_epsilon"], "to": budget, "at": now()}
                payload["budget_changes"].append(change)
                payload["budget_epsilon"] = budget
                return VerifiedPayload(payload, state.history, state.spent)

            ledger._commit(change_budget)
        return ledger

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, key_file: Path, anchor_path: Path | None = None
    ) -> PrivacyLedger:
        """Read-only verified view (``ecrec privacy show``, reports); never writes."""
        paths = LedgerPaths.resolve(path, key_file, anchor_path)
        paths.require_ledger()
        keys = derive_keys(read_key_file(paths.key_file))
        with ledger_lock(paths.ledger, exclusive=False):
            current = read_ledger(paths, keys)
            check_anchor(paths, keys, current, roll_forward=False)
        return cls(paths=paths, keys=keys, snapshot=current)

    # --------------------------------------------------------------- writing

    def _commit(self, change: _Change) -> None:
        """Apply ``change`` to the ledger as it is on disk, under the exclusive lock:
        re-read and verify, then write the ledger as the next write (``seq`` + 1),
        then advance the anchor. ``change`` must not modify the state it is given.

        Beyond the anchor, the process remembers the write it last saw: a disk state
        older than it, or another version of it (ledger *and* anchor swapped for a fork),
        is refused instead of silently adopted."""
        with ledger_lock(self._paths.ledger, exclusive=True):
            current = read_ledger(self._paths, self._keys, known=self._snap)
            disk, mine = current.state.payload, self._snap.state.payload
            if disk["ledger_id"] != mine["ledger_id"]:
                raise ledger_corrupt(self._paths.ledger, "it was replaced by another ledger")
            forked = disk["seq"] == mine["seq"] and current.raw != self._snap.raw
            if disk["seq"] < mine["seq"] or forked:
                raise ledger_corrupt(
                    self._paths.ledger,
                    f"rolled back or forked under a running node: write {disk['seq']} on disk "
                    f"is not the write {mine['seq']} this process saw, or a later one",
                )
            check_anchor(self._paths, self._keys, current, roll_forward=True)
            self._snap = current
            new = change(current.state)
            if new is None:
                return
            new.payload["seq"] = disk["seq"] + 1
            self._snap = write_ledger(self._paths, self._keys, new, encrypt=current.encrypted)
            advance_anchor(self._paths, self._keys, self._snap)

    # -------------------------------------------------------------- properties

    @property
    def path(self) -> Path:
        return self._paths.ledger

    @property
    def anchor_path(self) -> Path:
        return self._paths.anchor

    @property
    def ledger_id(self) -> str:
        return self._snap.state.payload["ledger_id"]

    @property
    def seq(self) -> int:
        """The write counter: 1 after init, +1 per write."""
        return self._snap.state.payload["seq"]

    @property
    def merchant_id(self) -> str:
        return self._snap.state.payload["merchant_id"]

    @property
    def budget_epsilon(self) -> float:
        return float(self._snap.state.payload["budget_epsilon"])

    @property
    def delta(self) -> float:
        return float(self._snap.state.payload["delta"])

    @property
    def accountant(self) -> Accountant:
        return self._snap.state.payload["accountant"]

    @property
    def unit(self) -> PrivacyUnit:
        """The privacy unit every ε is about: one shopper (``user``) or one impression (``row``)."""
        return self._snap.state.payload["unit"]

    @property
    def encrypted(self) -> bool:
        return self._snap.encrypted

    @property
    def history(self) -> list[RoundSpend]:
        return list(self._snap.state.history)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._snap.state.payload["entries"])

    @property
    def rounds(self) -> list[int]:
        return [entry["round"] for entry in self._snap.state.payload["entries"]]

    @property
    def budget_changes(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._snap.state.payload["budget_changes"])

    @property
    def reanchors(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._snap.state.payload["reanchors"])

    def __repr__(self) -> str:
        return (
            f"PrivacyLedger({str(self._paths.ledger)!r}, merchant={self.merchant_id!r}, "
            f"spent={self._snap.state.spent:.4g} ({self.accountant}, per {self.unit}), "
            f"budget={self.budget_epsilon:g}, seq={self.seq})"
        )

    # -------------------------------------------------------------- accounting

    def spent_epsilon(self) -> float:
        """ε of the whole recorded history under the ledger's accountant."""
        return self._snap.state.spent

    def remaining_epsilon(self) -> float:
        """Budget left (0 when spent, e.g. after the merchant lowered the budget)."""
        return max(0.0, self.budget_epsilon - self._snap.state.spent)

    def check_round(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> RoundCheck:
        """Would this round fit in the budget (as of the last read)? Nothing is recorded;
        :meth:`record_round` checks again against the file."""
        spend = RoundSpend(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        return _round_check(self._snap.state, spend)

    def record_round(
        self, *, round: int, noise_multiplier: float, sample_rate: float, steps: int
    ) -> float:
        """Record a round's spend durably and return ε after it.

        Under the exclusive lock: re-reads and verifies the file, refuses a round
        already recorded (:class:`PrivacyError`) or one that would overspend
        (:class:`BudgetExceededError`), both with nothing recorded; appends,
        writes the ledger atomically, then advances the anchor. If only the
        anchor write fails, the round *is* recorded (and this raises).
        """
        if not is_int(round) or round < 0:
            raise PrivacyError(f"round must be an integer >= 0, got {round!r}")
        spend = RoundSpend(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)

        def append(state: VerifiedPayload) -> VerifiedPayload:
            if any(entry["round"] == round for entry in state.payload["entries"]):
                raise PrivacyError(
                    f"round {round} is already recorded in privacy ledger {self._paths.ledger}"
                )
            check = _round_check(state, spend)
            if not check.affordable:
                raise BudgetExceededError(
                    f"merchant {state.payload['merchant_id']} refuses round {round}: "
                    f"{check.reason}; nothing recorded"
                )
            payload = copy.deepcopy(state.payload)
            entry = new_entry(round=round, spend=spend, epsilon_after=check.epsilon_after)
            payload["entries"].append(entry)
            return VerifiedPayload(payload, [*state.history, spend], check.epsilon_after)

        self._commit(append)
        return self._snap.state.spent

    def epsilon_by_round(self, accountant: Accountant | None = None) -> list[tuple[int, float]]:
        """Cumulative ε after each recorded round, optionally under another accountant."""
        entries = self._snap.state.payload["entries"]
        if accountant is None or accountant == self.accountant:
            return [(entry["round"], float(entry["epsilon_after"])) for entry in entries]
        eps = epsilon_trajectory(self._snap.state.history, delta=self.delta, accountant=accountant)
        return list(zip(self.rounds, eps, strict=True))

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the ledger's payload (e.g. for a checkpoint)."""
        return copy.deepcopy(self._snap.state.payload)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt a saved state that extends this ledger's history, and persist it.

        Refused (:class:`PrivacyError`) when the state belongs to another
        merchant, uses another delta, accountant or unit, is inconsistent, or
        would forget or rewrite recorded rounds. This ledger's identity, write
        counter, budget and logs are kept: a restored state never raises the budget.
        """
        offered = copy.deepcopy(dict(state))
        self._commit(lambda current: extended_by(current, offered, where=self._paths.ledger))

    def summary(self) -> dict[str, Any]:
        """JSON-ready overview for ``ecrec privacy show`` and reports.

        Every ε comes with its accountant, δ and privacy unit beside it.
        """
        basis = {"accountant": self.accountant, "delta": self.delta, "unit": self.unit}
        return {
            "path": str(self._paths.ledger),
            "anchor": str(self._paths.anchor),
            "merchant": self.merchant_id,
            "ledger_id": self.ledger_id,
            "seq": self.seq,
            "encrypted": self.encrypted,
            **basis,
            "budget": self.budget_epsilon,
            "spent": self._snap.state.spent,
            "remaining": self.remaining_epsilon(),
            "rounds": len(self._snap.state.history),
            "budget_changes": self.budget_changes,
            "reanchors": self.reanchors,
            "epsilon_by_round": [
                {"round": rnd, "epsilon": eps, **basis} for rnd, eps in self.epsilon_by_round()
            ],
        }
