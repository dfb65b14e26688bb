"""The ledger payload: its fields, and the checks that recompute every recorded ε.

Shared by a file on disk (failures are :class:`~ecrec.errors.LedgerCorruptError`)
and a state dict handed to ``load_state_dict`` (failures are
:class:`~ecrec.errors.PrivacyError`): the caller passes ``fail`` to build the
exception.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ecrec.errors import PrivacyError
from ecrec.privacy.accounting import ACCOUNTANTS, RoundSpend, epsilon_trajectory

PrivacyUnit = Literal["user", "row"]
PRIVACY_UNITS: tuple[str, ...] = ("user", "row")
#: Relative tolerance when re-checking recorded ε against a recomputation.
EPSILON_RTOL = 1e-9

#: Fields every entry holds, in the order they are written.
ENTRY_FIELDS = ("round", "noise_multiplier", "sample_rate", "steps", "epsilon_after", "recorded_at")
#: Fields that say what was spent; a state that changes one of these rewrites history.
SPEND_FIELDS = ("round", "noise_multiplier", "sample_rate", "steps", "epsilon_after")

Fail = Callable[[str], Exception]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= EPSILON_RTOL * max(abs(a), abs(b))


@dataclass(frozen=True)
class VerifiedPayload:
    """A payload whose shape was checked and whose ε were all recomputed."""

    payload: dict[str, Any]
    history: list[RoundSpend]
    spent: float


def _check_fields(payload: Mapping[str, Any], expected: Mapping[str, type], fail: Fail) -> None:
    for field, kind in expected.items():
        if field not in payload:
            raise fail(f"payload has no {field!r}")
        value = payload[field]
        if kind is float:
            ok = is_number(value) and math.isfinite(value)
        elif kind is int:
            ok = is_int(value)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise fail(f"payload field {field!r} has the wrong type")


def _check_entries(entries: list[Any], fail: Fail) -> list[RoundSpend]:
    history: list[RoundSpend] = []
    seen: set[int] = set()
    for i, entry in enumerate(entries):
        where = f"entries[{i}]"
        if not isinstance(entry, dict) or set(entry) != set(ENTRY_FIELDS):
            raise fail(f"{where} must be an object with exactly {', '.join(ENTRY_FIELDS)}")
        rnd = entry["round"]
        if not is_int(rnd) or rnd < 0:
            raise fail(f"{where} has an invalid round number {rnd!r}")
        if rnd in seen:
            raise fail(f"round {rnd} is recorded twice")
        seen.add(rnd)
        if not (is_number(entry["epsilon_after"]) and math.isfinite(entry["epsilon_after"])):
            raise fail(f"{where} has an invalid epsilon_after")
        if not isinstance(entry["recorded_at"], str):
            raise fail(f"{where} has an invalid recorded_at")
        if not is_int(entry["steps"]):
            raise fail(f"{where} has an invalid steps {entry['steps']!r}")
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
    return history


def _check_log(
    items: list[Any], name: str, fields: Mapping[str, Callable[[Any], bool]], fail: Fail
):
    for i, item in enumerate(items):
        if not (isinstance(item, dict) and set(item) == set(fields)) or not all(
            check(item[field]) for field, check in fields.items()
        ):
            raise fail(f"{name}[{i}] is malformed")


def verify_payload(payload: Any, fail: Fail, *, stored: bool) -> VerifiedPayload:
    """Check ``payload``'s shape and recompute every ε once (one trajectory pass).

    ``stored`` payloads (files) must also carry the ledger's identity and write
    counter (``ledger_id``, ``seq``) and its logs; a state dict need only carry
    what its spend depends on.
    """
    if not isinstance(payload, dict):
        raise fail("payload is not a JSON object")
    expected: dict[str, type] = {
        "merchant_id": str,
        "delta": float,
        "accountant": str,
        "unit": str,
        "entries": list,
    }
    if stored:
        expected |= {
            "ledger_id": str,
            "seq": int,
            "budget_epsilon": float,
            "created_at": str,
            "budget_changes": list,
            "reanchors": list,
        }
    _check_fields(payload, expected, fail)
    if not payload["merchant_id"]:
        raise fail("merchant_id is empty")
    if not 0 < payload["delta"] < 1:
        raise fail("delta is not in (0, 1)")
    if payload["accountant"] not in ACCOUNTANTS:
        raise fail(f"unknown accountant {payload['accountant']!r}")
    if payload["unit"] not in PRIVACY_UNITS:
        raise fail(f"unknown privacy unit {payload['unit']!r}")
    if stored:
        if not payload["budget_epsilon"] > 0:
            raise fail("budget_epsilon is not positive")
        if not payload["seq"] >= 1:
            raise fail("seq is not a positive write counter")
        if not payload["ledger_id"]:
            raise fail("ledger_id is empty")
        _check_log(
            payload["budget_changes"],
            "budget_changes",
            {"from": is_number, "to": is_number, "at": lambda v: isinstance(v, str)},
            fail,
        )
        _check_log(
            payload["reanchors"],
            "reanchors",
            {"seq": is_int, "at": lambda v: isinstance(v, str)},
            fail,
        )

    history = _check_entries(payload["entries"], fail)
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
    return VerifiedPayload(
        payload=payload, history=history, spent=recomputed[-1] if recomputed else 0.0
    )


def extended_by(
    current: VerifiedPayload, offered: Mapping[str, Any], *, where: object
) -> VerifiedPayload | None:
    """``current`` with the extra rounds of a state dict (``load_state_dict``), ``None`` if
    it adds none. Refused (:class:`PrivacyError`) when the state is for another merchant,
    δ, accountant or unit, fails verification, or would forget or rewrite a round. Only the
    entries are taken: identity, write counter, budget and logs stay ``current``'s."""
    mine = current.payload
    for field in ("merchant_id", "delta", "accountant", "unit"):
        if offered.get(field) != mine[field]:
            raise PrivacyError(
                f"refusing ledger state: its {field} is {offered.get(field)!r}, this "
                f"ledger's is {mine[field]!r}"
            )
    theirs = verify_payload(
        offered, lambda p: PrivacyError(f"refusing ledger state: {p}"), stored=False
    )
    ours, new_entries = mine["entries"], theirs.payload["entries"]
    if len(new_entries) < len(ours):
        raise PrivacyError(
            f"refusing ledger state: it has {len(new_entries)} rounds but {where} records "
            f"{len(ours)}; that would forget privacy spend"
        )
    for old, new in zip(ours, new_entries, strict=False):
        if any(old[k] != new[k] for k in SPEND_FIELDS):
            raise PrivacyError(f"refusing ledger state: it rewrites recorded round {old['round']}")
    if len(new_entries) == len(ours):
        return None
    payload = copy.deepcopy(mine)
    payload["entries"] = copy.deepcopy(new_entries)
    return VerifiedPayload(payload, theirs.history, theirs.spent)


def new_entry(*, round: int, spend: RoundSpend, epsilon_after: float) -> dict[str, Any]:
    return {
        "round": round,
        "noise_multiplier": spend.noise_multiplier,
        "sample_rate": spend.sample_rate,
        "steps": spend.steps,
        "epsilon_after": epsilon_after,
        "recorded_at": now(),
    }
