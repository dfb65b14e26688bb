"""The merchant's two explicit acts on a ledger: creating it, and anchoring it again after
losing its anchor (:meth:`PrivacyLedger.init` and :meth:`PrivacyLedger.reanchor`)."""

from __future__ import annotations

import copy
import math
import os
import secrets
from pathlib import Path
from typing import Any

from ecrec.data.schema import SAFE_NAME_RULE, is_safe_name, short_repr
from ecrec.errors import LedgerExistsError, PrivacyError
from ecrec.privacy.accounting import Accountant
from ecrec.privacy.anchor import ledger_lock
from ecrec.privacy.ledger_codec import LedgerKeys, create_key_file, derive_keys, read_key_file
from ecrec.privacy.ledger_payload import PRIVACY_UNITS, PrivacyUnit, VerifiedPayload, is_number, now
from ecrec.privacy.ledger_store import (
    LedgerPaths,
    Snapshot,
    advance_anchor,
    check_merchant,
    read_ledger,
    write_ledger,
)
from ecrec.privacy.spend import _check_accountant

#: What an act leaves: the ledger's paths, its keys and the write it made.
Made = tuple[LedgerPaths, LedgerKeys, Snapshot]


def _check_budget(budget_epsilon: Any) -> float:
    if not (is_number(budget_epsilon) and math.isfinite(budget_epsilon) and budget_epsilon > 0):
        raise PrivacyError(f"budget_epsilon must be a finite number > 0, got {budget_epsilon!r}")
    return float(budget_epsilon)


def create_ledger(
    path: str | os.PathLike[str],
    *,
    merchant_id: str,
    budget_epsilon: float,
    delta: float,
    accountant: Accountant,
    unit: PrivacyUnit,
    key_file: Path,
    anchor_path: Path | None,
    encrypt: bool,
) -> Made:
    """Create the ledger (write 1) and its anchor; see :meth:`PrivacyLedger.init`."""
    paths = LedgerPaths.resolve(path, key_file, anchor_path)
    if not is_safe_name(merchant_id):  # the id a node's data carries, and a file name
        raise PrivacyError(
            f"merchant_id {short_repr(merchant_id)} is not a merchant id ({SAFE_NAME_RULE})"
        )
    budget = _check_budget(budget_epsilon)
    if not (is_number(delta) and 0 < delta < 1):
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
    _check_accountant(accountant)
    if unit not in PRIVACY_UNITS:
        raise PrivacyError(f"unit must be one of {', '.join(PRIVACY_UNITS)}, got {unit!r}")
    paths.refuse_existing()
    secret = read_key_file(paths.key_file) if os.path.lexists(paths.key_file) else None
    try:
        paths.ledger.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PrivacyError(f"cannot create the folder of ledger {paths.ledger}: {err}") from err
    with ledger_lock(paths.ledger, exclusive=True):
        paths.refuse_existing()  # again, now that no other writer can create it
        keys = derive_keys(secret if secret is not None else create_key_file(paths.key_file))
        payload = {
            "ledger_id": secrets.token_hex(16),
            "seq": 1,
            "merchant_id": merchant_id,
            "budget_epsilon": budget,
            "delta": float(delta),
            "accountant": accountant,
            "unit": unit,
            "created_at": now(),
            "entries": [],
            "budget_changes": [],
            "reanchors": [],
        }
        state = VerifiedPayload(payload=payload, history=[], spent=0.0)
        written = write_ledger(paths, keys, state, encrypt=bool(encrypt))
        advance_anchor(paths, keys, written)
    return paths, keys, written


def reanchor_ledger(
    path: str | os.PathLike[str],
    *,
    key_file: Path,
    merchant_id: str,
    anchor_path: Path | None,
) -> Made:
    """Anchor the ledger as it is; see :meth:`PrivacyLedger.reanchor`."""
    paths = LedgerPaths.resolve(path, key_file, anchor_path)
    paths.require_ledger()
    keys = derive_keys(read_key_file(paths.key_file))
    with ledger_lock(paths.ledger, exclusive=True):
        if os.path.lexists(paths.anchor):
            raise LedgerExistsError(
                f"ledger anchor {paths.anchor} exists; re-anchoring is only for a lost anchor "
                "(to accept this ledger over it, forgetting any later spend, delete the "
                "anchor yourself first)"
            )
        current = read_ledger(paths, keys)
        check_merchant(paths, current, merchant_id)
        payload = copy.deepcopy(current.state.payload)
        payload["seq"] += 1
        payload["reanchors"].append({"seq": payload["seq"], "at": now()})
        state = VerifiedPayload(payload, current.state.history, current.state.spent)
        written = write_ledger(paths, keys, state, encrypt=current.encrypted)
        advance_anchor(paths, keys, written)
    return paths, keys, written
