"""The privacy ledger fails closed: each attack first, then the defence that refuses it.

Every refusal is checked to leave every file (ledger, key, anchor) byte-for-byte
as it was, and to be one line naming the ledger.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import queue
import shutil
import signal
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ecrec.privacy.ledger_store as ledger_store
from ecrec.errors import (
    BudgetExceededError,
    ConfigError,
    LedgerCorruptError,
    LedgerExistsError,
    LedgerMissingError,
    PrivacyError,
)
from ecrec.privacy import (
    ACCOUNTANTS,
    PrivacyLedger,
    RoundSpend,
    epsilon_for_history,
    epsilon_trajectory,
    read_key_file,
)
from ecrec.privacy.ledger_codec import decode_ledger, derive_keys
from ecrec.privacy.ledger_payload import verify_payload
from tests.privacy.reference import google_pld_epsilon, google_rdp_epsilon

DELTA = 1e-5
SPENDS = [
    {"noise_multiplier": 1.1, "sample_rate": 0.01, "steps": 300},
    {"noise_multiplier": 0.9, "sample_rate": 0.02, "steps": 150},
    {"noise_multiplier": 1.5, "sample_rate": 0.05, "steps": 80},
]
CHEAP_ROUND = {"noise_multiplier": 2.0, "sample_rate": 0.01, "steps": 100}


@dataclass(frozen=True)
class Files:
    """A node's ledger on one disk, its key and anchor on another (as the docs advise)."""

    ledger: Path
    key_file: Path

    @property
    def anchor(self) -> Path:
        return self.key_file.with_name(self.key_file.name + ".anchor")

    def open(self, **kwargs) -> PrivacyLedger:
        return PrivacyLedger.open(self.ledger, key_file=self.key_file, **kwargs)

    def load(self, **kwargs) -> PrivacyLedger:
        return PrivacyLedger.load(self.ledger, key_file=self.key_file, **kwargs)


def init_ledger(
    files: Files,
    *,
    budget: float = 8.0,
    encrypt: bool = False,
    accountant: str = "rdp",
    merchant: str = "m7",
    rounds: list[dict] = SPENDS,
    anchor_path: Path | None = None,
) -> PrivacyLedger:
    ledger = PrivacyLedger.init(
        files.ledger,
        merchant_id=merchant,
        budget_epsilon=budget,
        delta=DELTA,
        accountant=accountant,
        unit="user",
        key_file=files.key_file,
        anchor_path=anchor_path,
        encrypt=encrypt,
    )
    for rnd, spend in enumerate(rounds, start=1):
        ledger.record_round(round=rnd, **spend)
    return ledger


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(
        ledger=tmp_path / "data" / "privacy" / "ledger.json",
        key_file=tmp_path / "secrets" / "node.key",
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes (lock files are empty and stay so)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def assert_refused_and_untouched(
    files: Files, *, error: type[Exception] = LedgerCorruptError, match: str | None = None
) -> Exception:
    root = files.ledger.parents[2]
    before = tree(root)
    with pytest.raises(error, match=match) as refused:
        files.load()
    message = str(refused.value)
    assert "\n" not in message and (str(files.ledger) in message or str(files.anchor) in message)
    # open() would write (a new budget, an anchor roll-forward): it must refuse first.
    with pytest.raises(error, match=match):
        files.open(budget_epsilon=99.0)
    assert tree(root) == before
    return refused.value


def rewrite_envelope(path: Path, edit) -> None:
    envelope = json.loads(path.read_text())
    edit(envelope)
    path.write_text(json.dumps(envelope, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- #
# Deleted or never-initialised ledger: never a fresh budget
# --------------------------------------------------------------------------- #


def test_deleted_ledger_is_refused_not_recreated(files):
    spent = init_ledger(files).spent_epsilon()
    assert spent > 0
    files.ledger.unlink()  # the attack: delete the ledger to get a fresh budget
    with pytest.raises(LedgerMissingError, match="deleted or moved") as refused:
        files.open(budget_epsilon=8.0, merchant_id="m7")
    assert "\n" not in str(refused.value) and refused.value.exit_code == 4
    with pytest.raises(LedgerMissingError, match="deleted or moved"):
        files.load()
    assert not files.ledger.exists()
    # Nor can init quietly start over while the old anchor says a ledger existed.
    with pytest.raises(LedgerExistsError, match="anchor"):
        init_ledger(files, rounds=[])
    assert not files.ledger.exists()


def test_never_initialised_ledger_names_the_init_command(files):
    with pytest.raises(LedgerMissingError, match="ecrec privacy init") as refused:
        files.open(budget_epsilon=8.0)
    assert str(files.ledger) in str(refused.value) and refused.value.exit_code == 4
    assert not files.ledger.parent.exists() and not files.key_file.exists()


def test_init_refuses_an_existing_ledger_or_anchor(files, tmp_path):
    init_ledger(files)
    before = tree(tmp_path)
    with pytest.raises(LedgerExistsError, match="already exists"):
        init_ledger(files, rounds=[])
    other = Files(ledger=tmp_path / "data" / "other.json", key_file=files.key_file)
    with pytest.raises(LedgerExistsError, match="anchor"):  # same key file: same default anchor
        init_ledger(other, rounds=[])
    assert tree(tmp_path) == before


def test_init_creates_a_private_random_key_file_and_reuses_it(files, tmp_path):
    ledger = init_ledger(files, rounds=[])
    secret = files.key_file.read_bytes()
    assert len(secret) == 32 and read_key_file(files.key_file) == secret
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.ledger.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.anchor.stat().st_mode) == 0o600
    assert ledger.seq == 1 and ledger.rounds == [] and ledger.unit == "user"
    second = PrivacyLedger.init(
        tmp_path / "data" / "second.json",
        merchant_id="m7",
        budget_epsilon=8.0,
        delta=DELTA,
        accountant="rdp",
        unit="row",
        key_file=files.key_file,
        anchor_path=tmp_path / "secrets" / "second.anchor",
    )
    assert files.key_file.read_bytes() == secret  # used, not replaced
    assert second.ledger_id != ledger.ledger_id


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"merchant_id": ""}, "merchant_id"),
        ({"budget_epsilon": 0.0}, "budget_epsilon"),
        ({"budget_epsilon": float("inf")}, "budget_epsilon"),
        ({"delta": 1.0}, "delta"),
        ({"accountant": "gdp"}, "accountant"),
        ({"unit": "household"}, "unit"),
    ],
)
def test_init_rejects_bad_values_and_creates_nothing(files, kwargs, match):
    options = {
        "merchant_id": "m7",
        "budget_epsilon": 8.0,
        "delta": DELTA,
        "accountant": "rdp",
        "unit": "user",
        **kwargs,
    }
    with pytest.raises(PrivacyError, match=match):
        PrivacyLedger.init(files.ledger, key_file=files.key_file, **options)
    assert not files.ledger.exists() and not files.key_file.exists()


def test_key_file_helper_takes_bytes_verbatim_and_refuses_short_keys(tmp_path):
    key_file = tmp_path / "ledger.key"
    key_file.write_bytes(b"\n" + bytes(range(31)) + b" ")  # whitespace is key material
    assert read_key_file(key_file) == b"\n" + bytes(range(31)) + b" "
    key_file.write_bytes(b"s3cret\n")
    with pytest.raises(ConfigError, match="at least 32"):
        read_key_file(key_file)
    key_file.write_bytes(b"")
    with pytest.raises(ConfigError, match="empty"):
        read_key_file(key_file)
    with pytest.raises(ConfigError, match=r"missing\.key"):
        read_key_file(tmp_path / "missing.key")


# --------------------------------------------------------------------------- #
# Tampering: edits, truncation, re-summing, clearing
# --------------------------------------------------------------------------- #


def test_edited_number_with_consistent_epsilons_is_refused(files):
    init_ledger(files)
    honest = files.load().spent_epsilon()

    def lower_the_spend(envelope):
        # The attack: raise round 2's σ tenfold and recompute every ε so the payload is
        # self-consistent (it would pass every unkeyed check).
        payload = envelope["payload"]
        payload["entries"][1]["noise_multiplier"] = 9.0
        history = [
            RoundSpend(**{k: e[k] for k in ("noise_multiplier", "sample_rate", "steps")})
            for e in payload["entries"]
        ]
        eps = epsilon_trajectory(history, delta=DELTA, accountant="rdp")
        for entry, value in zip(payload["entries"], eps, strict=True):
            entry["epsilon_after"] = value
        forged = verify_payload(payload, ValueError, stored=True)
        assert forged.spent < honest  # the forgery would grant budget back

    rewrite_envelope(files.ledger, lower_the_spend)
    assert_refused_and_untouched(files, match="HMAC mismatch")


@pytest.mark.parametrize("keep", [0, 1, 50, -40, -1])
def test_truncated_ledger_is_refused(files, keep):
    init_ledger(files)
    data = files.ledger.read_bytes()
    files.ledger.write_bytes(data[:keep])  # the attack (or a torn write)
    assert_refused_and_untouched(files)


def test_resummed_checksum_with_cleared_entries_is_refused(files):
    init_ledger(files)
    assert files.load().spent_epsilon() > 0

    def clear_and_resum(envelope):
        # The attack on the old format: clear the entries (ε = 0) and recompute the
        # unkeyed SHA-256 of the canonical payload, putting it wherever a checksum goes.
        envelope["payload"]["entries"] = []
        assert verify_payload(envelope["payload"], ValueError, stored=True).spent == 0.0
        canonical = json.dumps(
            envelope["payload"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        envelope["sha256"] = envelope["hmac"] = hashlib.sha256(canonical).hexdigest()

    rewrite_envelope(files.ledger, clear_and_resum)
    assert_refused_and_untouched(files, match="HMAC mismatch")


def test_reformatted_ledger_is_refused(files):
    init_ledger(files)
    text = files.ledger.read_text()
    files.ledger.write_text(json.dumps(json.loads(text)))  # same JSON, other layout
    assert_refused_and_untouched(files, match="byte-identical")


def test_old_unkeyed_version_is_refused(files):
    init_ledger(files)
    rewrite_envelope(files.ledger, lambda envelope: envelope.update(version=1))
    assert_refused_and_untouched(files, match="version 1 has an unkeyed checksum")


# --------------------------------------------------------------------------- #
# Rollback, forks and the anchor
# --------------------------------------------------------------------------- #


def test_rollback_to_an_older_copy_is_refused(files, tmp_path):
    ledger = init_ledger(files, rounds=SPENDS[:2])
    copy_after_round_2 = tmp_path / "backup-after-round-2.json"
    shutil.copy2(files.ledger, copy_after_round_2)
    eps_after_2 = ledger.spent_epsilon()
    eps_after_3 = ledger.record_round(round=3, **SPENDS[2])
    # rdp, δ=1e-5: ε goes 2.7796 -> 3.1260 with round 3; the copy would hand back 0.346.
    assert eps_after_2 == pytest.approx(2.7796109553018797, rel=1e-9)
    assert eps_after_3 == pytest.approx(3.1259838544513907, rel=1e-9)

    shutil.copy2(copy_after_round_2, files.ledger)  # the attack: restore the older copy
    keys = derive_keys(read_key_file(files.key_file))
    payload, _ = decode_ledger(files.ledger, files.ledger.read_bytes(), keys)
    assert len(payload["entries"]) == 2  # validly sealed: only the anchor can tell
    refused = assert_refused_and_untouched(files, match="rolled back")
    assert f"ε={eps_after_2:.6g} (rdp) over 2 rounds" in str(refused)
    assert "write 3" in str(refused) and "write 4" in str(refused)


def test_rollback_with_the_anchor_deleted_is_still_refused(files, tmp_path):
    init_ledger(files, rounds=SPENDS[:1])
    old = tmp_path / "old.json"
    shutil.copy2(files.ledger, old)
    files.open().record_round(round=2, **SPENDS[1])
    shutil.copy2(old, files.ledger)
    files.anchor.unlink()  # the attack: restore the copy and remove the evidence
    assert_refused_and_untouched(files, error=LedgerMissingError, match="--reanchor")


def test_rolled_back_anchor_is_refused(files, tmp_path):
    init_ledger(files, rounds=SPENDS[:1])
    old_anchor = tmp_path / "old.anchor"
    shutil.copy2(files.anchor, old_anchor)
    ledger = files.open()
    ledger.record_round(round=2, **SPENDS[1])
    ledger.record_round(round=3, **SPENDS[2])
    shutil.copy2(old_anchor, files.anchor)  # anchor two writes behind the ledger
    assert_refused_and_untouched(files, match="anchor was rolled back")


def test_forked_ledger_is_refused(files, tmp_path):
    init_ledger(files, rounds=SPENDS[:1])
    saved = tmp_path / "saved"
    shutil.copytree(files.ledger.parent, saved / "data")
    shutil.copytree(files.key_file.parent, saved / "secrets")
    files.open().record_round(round=2, **SPENDS[1])
    branch_a = files.ledger.read_bytes()
    # Restore everything and write a different round 2: a second, validly sealed write 3.
    shutil.rmtree(files.ledger.parent)
    shutil.rmtree(files.key_file.parent)
    shutil.copytree(saved / "data", files.ledger.parent)
    shutil.copytree(saved / "secrets", files.key_file.parent)
    files.open().record_round(round=2, **CHEAP_ROUND)
    files.ledger.write_bytes(branch_a)  # the attack: swap in the other branch
    assert_refused_and_untouched(files, match="forked")


def test_a_running_node_notices_a_fork_even_with_its_anchor(files, tmp_path):
    """Ledger and anchor both swapped for another branch of the same write: the anchor
    agrees, but the node remembers which write it saw and would otherwise forget it."""
    init_ledger(files, rounds=SPENDS[:1])
    saved = tmp_path / "saved"
    shutil.copytree(files.ledger.parents[1], saved / "data")
    shutil.copytree(files.key_file.parent, saved / "secrets")
    node = files.open()
    node.record_round(round=2, **SPENDS[1])
    for name in ("data", "secrets"):  # the attack: restore both, write a cheaper round 2
        shutil.rmtree(tmp_path / name)
        shutil.copytree(saved / name, tmp_path / name)
    files.open().record_round(round=2, **CHEAP_ROUND)
    before = tree(tmp_path)
    with pytest.raises(LedgerCorruptError, match="forked under a running node"):
        node.record_round(round=3, **SPENDS[2])
    assert tree(tmp_path) == before


def test_rollback_of_ledger_and_anchor_together_is_the_documented_limit(files, tmp_path):
    """Not a defence: restoring ledger, key and anchor together cannot be seen locally
    (module docstring). This pins the limit so a change to it is noticed."""
    init_ledger(files, rounds=SPENDS[:1])
    shutil.copy2(files.ledger, tmp_path / "l")
    shutil.copy2(files.anchor, tmp_path / "a")
    files.open().record_round(round=2, **SPENDS[1])
    shutil.copy2(tmp_path / "l", files.ledger)
    shutil.copy2(tmp_path / "a", files.anchor)
    assert files.load().rounds == [1]


def test_deleted_anchor_is_refused_until_the_merchant_reanchors(files):
    ledger = init_ledger(files)
    files.anchor.unlink()  # the attack (or an accident)
    refused = assert_refused_and_untouched(files, error=LedgerMissingError, match="--reanchor")
    assert "ecrec privacy init --reanchor" in str(refused) and refused.exit_code == 4

    with pytest.raises(LedgerCorruptError, match="belongs to merchant"):
        PrivacyLedger.reanchor(files.ledger, key_file=files.key_file, merchant_id="m8")
    assert not files.anchor.exists()
    again = PrivacyLedger.reanchor(files.ledger, key_file=files.key_file, merchant_id="m7")
    assert again.spent_epsilon() == ledger.spent_epsilon() and again.seq == ledger.seq + 1
    assert [r["seq"] for r in again.reanchors] == [again.seq]
    reopened = files.open(merchant_id="m7")
    assert reopened.rounds == [1, 2, 3] and reopened.reanchors == again.reanchors

    before = tree(files.ledger.parents[2])
    with pytest.raises(LedgerExistsError, match="only for a lost anchor"):
        PrivacyLedger.reanchor(files.ledger, key_file=files.key_file, merchant_id="m7")
    assert tree(files.ledger.parents[2]) == before


def test_tampered_anchor_is_refused(files):
    init_ledger(files)
    rewrite_envelope(files.anchor, lambda anchor: anchor.update(seq=1))
    assert_refused_and_untouched(files, match=r"anchor .* HMAC mismatch")


# --------------------------------------------------------------------------- #
# Keys and identities
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("encrypt", [False, True])
def test_wrong_key_is_refused(files, tmp_path, encrypt):
    init_ledger(files, encrypt=encrypt)
    wrong = tmp_path / "secrets" / "other.key"
    wrong.write_bytes(os.urandom(32))
    before = tree(tmp_path)
    for reader in (PrivacyLedger.load, PrivacyLedger.open):
        with pytest.raises(LedgerCorruptError, match="key id") as refused:
            reader(files.ledger, key_file=wrong, anchor_path=files.anchor)
        assert "\n" not in str(refused.value)
    assert tree(tmp_path) == before


def test_another_merchants_ledger_is_refused(files, tmp_path):
    init_ledger(files, merchant="m7")
    theirs = Files(ledger=tmp_path / "m8" / "ledger.json", key_file=tmp_path / "m8" / "node.key")
    init_ledger(theirs, merchant="m8", rounds=SPENDS[:1])
    shutil.copy2(theirs.ledger, files.ledger)  # the attack: m8's cheaper ledger as m7's
    assert_refused_and_untouched(files, match="key id")


def test_another_ledger_under_the_same_node_secret_is_refused(files, tmp_path):
    """Even one node secret shared by two merchants' ledgers does not let them swap."""
    init_ledger(files, merchant="m7")
    other = Files(ledger=tmp_path / "data" / "m8.json", key_file=files.key_file)
    m8_anchor = tmp_path / "secrets" / "m8.anchor"
    init_ledger(other, merchant="m8", rounds=SPENDS[:1], anchor_path=m8_anchor)
    shutil.copy2(other.ledger, files.ledger)
    assert_refused_and_untouched(files, match="belongs to another ledger")
    with pytest.raises(LedgerCorruptError, match="belongs to merchant 'm8', not 'm7'"):
        PrivacyLedger.open(
            files.ledger, key_file=files.key_file, anchor_path=m8_anchor, merchant_id="m7"
        )


def test_encrypted_ledger_hides_the_payload_and_round_trips(files):
    ledger = init_ledger(files, encrypt=True)
    text = files.ledger.read_text()
    envelope = json.loads(text)
    assert "payload" not in envelope and envelope["encryption"] == "fernet"
    assert '"merchant_id"' not in text and '"noise_multiplier"' not in text
    reopened = files.open()
    assert reopened.encrypted and reopened.entries == ledger.entries
    reopened.record_round(round=4, **CHEAP_ROUND)
    assert "payload" not in json.loads(files.ledger.read_text())
    assert files.load().rounds == [1, 2, 3, 4]


# --------------------------------------------------------------------------- #
# Budget and accounting
# --------------------------------------------------------------------------- #


def test_overspending_round_is_refused_and_nothing_recorded(files):
    ledger = init_ledger(files, budget=4.0)
    before = tree(files.ledger.parents[2])
    spent = ledger.spent_epsilon()
    check = ledger.check_round(noise_multiplier=0.7, sample_rate=0.05, steps=500)
    assert not check.affordable and check.epsilon_before == spent and check.budget == 4.0
    with pytest.raises(BudgetExceededError, match="over the budget of 4 by") as refused:
        ledger.record_round(round=4, noise_multiplier=0.7, sample_rate=0.05, steps=500)
    assert f"{check.epsilon_after - 4.0:.6g}" in str(refused.value)
    assert "nothing recorded" in str(refused.value) and refused.value.exit_code == 3
    assert ledger.spent_epsilon() == spent and ledger.rounds == [1, 2, 3]
    assert tree(files.ledger.parents[2]) == before


def test_affordable_round_is_recorded_with_its_check(files):
    ledger = init_ledger(files)
    check = ledger.check_round(**CHEAP_ROUND)
    assert check.affordable and "within" in check.reason
    eps = ledger.record_round(round=4, **CHEAP_ROUND)
    assert eps == check.epsilon_after == ledger.spent_epsilon()
    assert ledger.remaining_epsilon() == pytest.approx(8.0 - eps)
    assert eps == epsilon_for_history(ledger.history, delta=DELTA, accountant="rdp")


def test_duplicate_round_is_refused(files):
    ledger = init_ledger(files)
    before = tree(files.ledger.parents[2])
    with pytest.raises(PrivacyError, match="round 2 is already recorded"):
        ledger.record_round(round=2, noise_multiplier=5.0, sample_rate=0.001, steps=1)
    assert tree(files.ledger.parents[2]) == before


@pytest.mark.parametrize("accountant", ACCOUNTANTS)
def test_epsilon_matches_an_independent_dp_accounting_recomputation(files, accountant):
    ledger = init_ledger(files, accountant=accountant)
    history = [RoundSpend(**spend) for spend in SPENDS]
    reloaded = files.load()  # recomputes every ε under the ledger's accountant
    assert reloaded.history == history
    for i, (_, eps) in enumerate(reloaded.epsilon_by_round()):
        if accountant == "rdp":  # same orders; dp_accounting's fractional series is looser
            assert eps == pytest.approx(google_rdp_epsilon(history[: i + 1], DELTA), rel=1e-3)
        else:  # PLD/PRV-style numerical accountants agree within their discretisation
            reference = google_pld_epsilon(history[: i + 1], DELTA)
            assert abs(eps - reference) <= 0.02 + 0.01 * reference
    assert ledger.spent_epsilon() == reloaded.epsilon_by_round()[-1][1]


def test_budget_change_is_the_merchants_and_is_logged(files):
    init_ledger(files, budget=8.0)
    lowered = files.open(budget_epsilon=1.0)
    assert lowered.budget_epsilon == 1.0 and lowered.remaining_epsilon() == 0.0
    assert not lowered.check_round(noise_multiplier=10.0, sample_rate=0.001, steps=1).affordable
    assert [(c["from"], c["to"]) for c in files.load().budget_changes] == [(8.0, 1.0)]
    assert files.open(budget_epsilon=1.0).budget_changes == lowered.budget_changes  # no-op


def test_summary_puts_accountant_delta_and_unit_beside_every_epsilon(files):
    ledger = init_ledger(files)
    summary = json.loads(json.dumps(files.load().summary(), allow_nan=False))
    assert summary["spent"] == ledger.spent_epsilon()
    assert (summary["accountant"], summary["delta"], summary["unit"]) == ("rdp", DELTA, "user")
    assert summary["seq"] == 4 and summary["merchant"] == "m7"
    assert [r["round"] for r in summary["epsilon_by_round"]] == [1, 2, 3]
    assert all(
        (r["accountant"], r["delta"], r["unit"]) == ("rdp", DELTA, "user")
        for r in summary["epsilon_by_round"]
    )
    assert "declined" not in summary and "declined" not in ledger.state_dict()


def test_documented_format(files):
    init_ledger(files)
    envelope = json.loads(files.ledger.read_text())
    assert set(envelope) == {"format", "version", "key_id", "payload", "hmac"}
    assert (envelope["format"], envelope["version"]) == ("ecrec-privacy-ledger", 2)
    payload = envelope["payload"]
    assert set(payload) == {
        "ledger_id", "seq", "merchant_id", "budget_epsilon", "delta", "accountant", "unit",
        "created_at", "entries", "budget_changes", "reanchors",
    }  # fmt: skip
    assert payload["seq"] == 4  # init + 3 rounds
    assert set(payload["entries"][0]) == {
        "round", "noise_multiplier", "sample_rate", "steps", "epsilon_after", "recorded_at",
    }  # fmt: skip
    anchor = json.loads(files.anchor.read_text())
    assert (anchor["ledger_id"], anchor["seq"]) == (payload["ledger_id"], 4)
    assert anchor["ledger_sha256"] == hashlib.sha256(files.ledger.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- #
# State dicts and other accountants
# --------------------------------------------------------------------------- #


def test_state_dict_round_trip_extends_a_ledger(files, tmp_path):
    source = init_ledger(files)
    target_files = Files(ledger=tmp_path / "b" / "ledger.json", key_file=tmp_path / "b" / "k")
    target = init_ledger(target_files, budget=5.0, rounds=[])
    target.load_state_dict(source.state_dict())
    assert target.spent_epsilon() == source.spent_epsilon()
    assert target.budget_epsilon == 5.0  # the node's budget wins over the state's
    assert target_files.load().entries == source.entries
    assert target_files.load().ledger_id == target.ledger_id != source.ledger_id


def test_state_dict_refusals(files):
    ledger = init_ledger(files)
    state = ledger.state_dict()

    shorter = json.loads(json.dumps(state))
    shorter["entries"].pop()
    with pytest.raises(PrivacyError, match="forget"):
        ledger.load_state_dict(shorter)
    mismatches = [("merchant_id", "m8"), ("delta", 1e-6), ("accountant", "prv"), ("unit", "row")]
    for field, value in mismatches:
        other = json.loads(json.dumps(state))
        other[field] = value
        with pytest.raises(PrivacyError, match=field):
            ledger.load_state_dict(other)
    forged = json.loads(json.dumps(state))
    forged["entries"][0]["epsilon_after"] = 0.01
    with pytest.raises(PrivacyError, match="records"):
        ledger.load_state_dict(forged)
    rewritten = json.loads(json.dumps(state))
    rewritten["entries"][0]["round"] = 10
    with pytest.raises(PrivacyError, match="rewrites"):
        ledger.load_state_dict(rewritten)
    assert files.load().entries == ledger.entries and files.load().seq == 4


def test_epsilon_by_round_under_another_accountant(files):
    ledger = init_ledger(files, rounds=[])
    ledger.record_round(round=0, noise_multiplier=1.0, sample_rate=0.02, steps=30)
    ledger.record_round(round=1, noise_multiplier=1.2, sample_rate=0.02, steps=30)
    rdp = ledger.epsilon_by_round()
    prv = ledger.epsilon_by_round("prv")
    assert [r for r, _ in prv] == [0, 1]
    assert all(p < r for (_, p), (_, r) in zip(prv, rdp, strict=True))
    assert prv[1][1] == epsilon_for_history(ledger.history, delta=DELTA, accountant="prv")


# --------------------------------------------------------------------------- #
# Crashes
# --------------------------------------------------------------------------- #


def test_crash_during_the_ledger_write_leaves_the_old_ledger(files, monkeypatch):
    ledger = init_ledger(files)
    before = tree(files.ledger.parents[2])
    spent = ledger.spent_epsilon()

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(PrivacyError, match="nothing was recorded"):
        ledger.record_round(round=4, **CHEAP_ROUND)
    monkeypatch.undo()
    assert tree(files.ledger.parents[2]) == before  # old ledger, old anchor, no temp file
    assert ledger.spent_epsilon() == spent and ledger.rounds == [1, 2, 3]
    assert files.load().spent_epsilon() == spent
    ledger.record_round(round=4, **CHEAP_ROUND)  # usable again once the disk is
    assert files.load().rounds == [1, 2, 3, 4]


def test_crash_between_ledger_and_anchor_writes_is_rolled_forward(files, monkeypatch):
    ledger = init_ledger(files)
    anchor_before = files.anchor.read_bytes()

    def crash(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ledger_store, "write_anchor", crash)
    with pytest.raises(PrivacyError, match=r"was written .* next open rolls it forward"):
        ledger.record_round(round=4, **CHEAP_ROUND)
    monkeypatch.undo()
    # Never under-counts: the round is in the ledger although the anchor lags one write.
    assert files.anchor.read_bytes() == anchor_before
    viewed = files.load()  # read-only: accepted, anchor untouched
    assert viewed.rounds == [1, 2, 3, 4] and viewed.seq == 5
    assert files.anchor.read_bytes() == anchor_before
    reopened = files.open()  # a writer rolls the anchor forward
    assert json.loads(files.anchor.read_text())["seq"] == reopened.seq == 5
    reopened.record_round(round=5, **CHEAP_ROUND)
    assert files.load().rounds == [1, 2, 3, 4, 5]


def _record_then_die_before_the_anchor(ledger: str, key_file: str) -> None:
    """Child: record round 4, then SIGKILL itself between the ledger and anchor writes."""
    ledger_store.write_anchor = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    PrivacyLedger.open(ledger, key_file=Path(key_file)).record_round(round=4, **CHEAP_ROUND)


def test_sigkill_between_ledger_and_anchor_writes(files):
    init_ledger(files)
    context = multiprocessing.get_context("spawn")
    child = context.Process(
        target=_record_then_die_before_the_anchor, args=(str(files.ledger), str(files.key_file))
    )
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    assert json.loads(files.anchor.read_text())["seq"] == 4  # the anchor never moved
    reopened = files.open()
    assert reopened.rounds == [1, 2, 3, 4] and json.loads(files.anchor.read_text())["seq"] == 5


def _record_forever(ledger: str, key_file: str, recorded) -> None:
    """Child: record rounds 1, 2, ... as fast as it can, reporting each after it returns."""
    node = PrivacyLedger.open(ledger, key_file=Path(key_file))
    for rnd in range(1, 10_000):
        node.record_round(round=rnd, **CHEAP_ROUND)
        recorded.put(rnd)


def test_sigkill_mid_loop_never_loses_or_corrupts_a_round(files):
    init_ledger(files, budget=1e6, rounds=[])
    context = multiprocessing.get_context("spawn")
    recorded = context.Queue()
    child = context.Process(
        target=_record_forever, args=(str(files.ledger), str(files.key_file), recorded)
    )
    child.start()
    reported = [recorded.get(timeout=120) for _ in range(5)]
    time.sleep(0.013)  # land somewhere inside a later write
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    with contextlib.suppress(queue.Empty):
        while True:
            reported.append(recorded.get(timeout=1))
    survivor = files.open()  # opens: old or new state, never corrupt
    assert survivor.rounds == list(range(1, len(survivor.rounds) + 1))
    assert set(reported) <= set(survivor.rounds)  # every round the child saw recorded is there
    assert survivor.spent_epsilon() == pytest.approx(
        google_rdp_epsilon(survivor.history, DELTA), rel=1e-6
    )


# --------------------------------------------------------------------------- #
# Concurrent writers
# --------------------------------------------------------------------------- #


def _record_rounds(ledger: str, key_file: str, rounds: list[int], start) -> None:
    """Child: open the ledger (a view that goes stale at once), then record ``rounds``."""
    node = PrivacyLedger.open(ledger, key_file=Path(key_file))
    start.wait(120)
    for rnd in rounds:
        node.record_round(round=rnd, noise_multiplier=1.0 + rnd / 100, sample_rate=0.01, steps=20)


def test_two_processes_recording_at_once_lose_no_round(files):
    init_ledger(files, budget=1e6, rounds=[])
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    shares = [list(range(0, 16, 2)), list(range(1, 16, 2))]
    children = [
        context.Process(
            target=_record_rounds, args=(str(files.ledger), str(files.key_file), share, start)
        )
        for share in shares
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(300)
    assert [child.exitcode for child in children] == [0, 0]

    ledger = files.open()
    assert sorted(ledger.rounds) == list(range(16)) and ledger.seq == 1 + 16
    expected = [
        RoundSpend(noise_multiplier=1.0 + rnd / 100, sample_rate=0.01, steps=20)
        for rnd in ledger.rounds
    ]
    assert ledger.history == expected
    assert ledger.spent_epsilon() == pytest.approx(google_rdp_epsilon(expected, DELTA), rel=1e-6)
    anchor = json.loads(files.anchor.read_text())
    assert anchor["seq"] == ledger.seq
    assert anchor["ledger_sha256"] == hashlib.sha256(files.ledger.read_bytes()).hexdigest()


def test_a_stale_in_memory_ledger_rereads_instead_of_losing_a_round(files):
    first = init_ledger(files)
    second = files.open()
    first.record_round(round=4, **CHEAP_ROUND)
    second.record_round(round=5, **CHEAP_ROUND)  # old code refused or overwrote round 4
    assert files.load().rounds == [1, 2, 3, 4, 5]
    with pytest.raises(PrivacyError, match="round 5 is already recorded"):
        first.record_round(round=5, **CHEAP_ROUND)


def test_a_writer_waits_for_the_lock(files):
    ledger = init_ledger(files)
    lock = os.open(files.ledger.with_name(files.ledger.name + ".lock"), os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another writer holds the ledger
    done = threading.Event()
    writer = threading.Thread(
        target=lambda: (ledger.record_round(round=4, **CHEAP_ROUND), done.set())
    )
    writer.start()
    before = files.ledger.read_bytes()
    try:
        assert not done.wait(0.5)  # blocked on the lock, not racing past it
        assert files.ledger.read_bytes() == before
    finally:
        os.close(lock)  # releases the lock
    writer.join(30)
    assert done.is_set() and files.load().rounds == [1, 2, 3, 4]


# --------------------------------------------------------------------------- #
# Properties
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def sealed(tmp_path_factory) -> tuple[Files, bytes, bytes]:
    root = tmp_path_factory.mktemp("sealed")
    files = Files(ledger=root / "data" / "privacy" / "ledger.json", key_file=root / "s" / "k")
    init_ledger(files)
    return files, files.ledger.read_bytes(), files.anchor.read_bytes()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_of_the_ledger_is_refused(sealed, data):
    files, original, _ = sealed
    index = data.draw(st.integers(0, len(original) - 1), label="index")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[index]), label="byte")
    try:
        files.ledger.write_bytes(original[:index] + bytes([byte]) + original[index + 1 :])
        with pytest.raises(LedgerCorruptError):
            files.load()
    finally:
        files.ledger.write_bytes(original)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_of_the_anchor_is_refused(sealed, data):
    files, _, original = sealed
    index = data.draw(st.integers(0, len(original) - 1), label="index")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[index]), label="byte")
    try:
        files.anchor.write_bytes(original[:index] + bytes([byte]) + original[index + 1 :])
        with pytest.raises(LedgerCorruptError):
            files.load()
    finally:
        files.anchor.write_bytes(original)


spends = st.builds(
    dict,
    noise_multiplier=st.floats(min_value=0.7, max_value=6.0),
    sample_rate=st.floats(min_value=1e-3, max_value=0.2),
    steps=st.integers(0, 400),
)


@settings(max_examples=15, deadline=None)
@given(st.lists(spends, min_size=1, max_size=6))
def test_epsilon_is_monotone_and_survives_a_restart(rounds):
    with tempfile.TemporaryDirectory() as folder:
        files = Files(ledger=Path(folder) / "l.json", key_file=Path(folder) / "keys" / "k")
        ledger = init_ledger(files, budget=1e6, rounds=[])
        seen = [ledger.spent_epsilon()]
        for rnd, spend in enumerate(rounds):
            seen.append(ledger.record_round(round=rnd, **spend))
        assert seen == sorted(seen)
        assert [eps for _, eps in files.load().epsilon_by_round()] == seen[1:]
