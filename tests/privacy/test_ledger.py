"""The privacy ledger: persistence, fail-closed verification, budget enforcement."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrec.errors import BudgetExceededError, ConfigError, LedgerCorruptError, PrivacyError
from ecrec.privacy import PrivacyLedger, RoundSpend, epsilon_for_history, read_key_file
from tests.privacy.reference import google_rdp_epsilon

DELTA = 1e-5
KEY = b"merchant-7 ledger key: 32 random bytes would be better"
SPENDS = [
    {"noise_multiplier": 1.1, "sample_rate": 0.01, "steps": 300},
    {"noise_multiplier": 0.9, "sample_rate": 0.02, "steps": 150},
    {"noise_multiplier": 1.5, "sample_rate": 0.05, "steps": 80},
]


def make_ledger(path: Path, *, key: bytes | None = None, budget: float = 8.0) -> PrivacyLedger:
    ledger = PrivacyLedger.open(path, budget_epsilon=budget, delta=DELTA, key=key, merchant_id="m7")
    for rnd, spend in enumerate(SPENDS, start=1):
        ledger.record_round(round=rnd, **spend)
    return ledger


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "node" / "privacy" / "ledger.json"


def rewrite_plain(path: Path, edit) -> None:
    """Edit a plain ledger's payload and re-sign it, as a careful attacker would."""
    envelope = json.loads(path.read_text())
    edit(envelope["payload"])
    canonical = json.dumps(
        envelope["payload"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    envelope["sha256"] = hashlib.sha256(canonical).hexdigest()
    path.write_text(json.dumps(envelope))


def assert_refused_and_untouched(path: Path, *, key: bytes | None = None, match: str = "") -> None:
    before = path.read_bytes()
    with pytest.raises(LedgerCorruptError, match=match) as err:
        PrivacyLedger.load(path, key=key)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    # open() would otherwise write (a new budget): it must refuse before touching the file.
    with pytest.raises(LedgerCorruptError):
        PrivacyLedger.open(path, budget_epsilon=99.0, delta=DELTA, key=key)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# --------------------------------------------------------------------------- #
# Persistence
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("key", [None, KEY])
def test_epsilon_survives_a_restart_exactly(ledger_path, key):
    ledger = make_ledger(ledger_path, key=key)
    spent = ledger.spent_epsilon()
    reopened = PrivacyLedger.open(ledger_path, budget_epsilon=8.0, delta=DELTA, key=key)
    assert reopened.spent_epsilon() == spent
    assert reopened.entries == ledger.entries
    assert reopened.history == ledger.history
    assert reopened.epsilon_by_round() == ledger.epsilon_by_round()
    assert reopened.merchant_id == "m7"
    assert spent > 0


def test_created_with_parent_folders_and_documented_format(ledger_path):
    make_ledger(ledger_path)
    envelope = json.loads(ledger_path.read_text())
    assert envelope["format"] == "ecrec-privacy-ledger"
    assert envelope["version"] == 1
    payload = envelope["payload"]
    assert {
        "merchant_id",
        "budget_epsilon",
        "delta",
        "accountant",
        "created_at",
        "entries",
        "declined",
        "budget_changes",
    } <= set(payload)
    assert set(payload["entries"][0]) == {
        "round",
        "noise_multiplier",
        "sample_rate",
        "steps",
        "epsilon_after",
        "recorded_at",
    }
    assert [e["round"] for e in payload["entries"]] == [1, 2, 3]


def test_encrypted_ledger_hides_the_payload(ledger_path):
    make_ledger(ledger_path, key=KEY)
    text = ledger_path.read_text()
    envelope = json.loads(text)
    assert "payload" not in envelope and "ciphertext" in envelope
    # Quoted JSON keys cannot occur in (url-safe base64) ciphertext by chance.
    assert '"merchant_id"' not in text and '"noise_multiplier"' not in text


def test_ledger_epsilon_matches_dp_accounting(ledger_path):
    ledger = make_ledger(ledger_path)
    history = [RoundSpend(**spend) for spend in SPENDS]
    assert ledger.history == history
    assert ledger.spent_epsilon() == pytest.approx(google_rdp_epsilon(history, DELTA), rel=1e-6)
    for i, (_, eps) in enumerate(ledger.epsilon_by_round()):
        assert eps == pytest.approx(google_rdp_epsilon(history[: i + 1], DELTA), rel=1e-6)


# --------------------------------------------------------------------------- #
# Fail closed: tampering, truncation, keys
# --------------------------------------------------------------------------- #


def test_edited_number_is_refused(ledger_path):
    make_ledger(ledger_path)
    text = ledger_path.read_text()
    assert '"noise_multiplier": 0.9' in text
    ledger_path.write_text(text.replace('"noise_multiplier": 0.9', '"noise_multiplier": 9.0'))
    assert_refused_and_untouched(ledger_path, match="checksum")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p: p["entries"][1].update(noise_multiplier=9.0), "records"),
        (lambda p: p["entries"][2].update(round=1), "twice"),
        (lambda p: p["entries"].pop(0), "records"),
        (lambda p: p.update(delta=0.5), "records"),
        (lambda p: p["entries"][0].update(steps="300"), "steps"),
        (lambda p: p.pop("budget_changes"), "budget_changes"),
    ],
)
def test_resigned_but_inconsistent_ledger_is_refused(ledger_path, edit, match):
    make_ledger(ledger_path)
    rewrite_plain(ledger_path, edit)
    assert_refused_and_untouched(ledger_path, match=match)


def test_flipped_ciphertext_byte_is_refused(ledger_path):
    make_ledger(ledger_path, key=KEY)
    envelope = json.loads(ledger_path.read_text())
    token = envelope["ciphertext"]
    middle = len(token) // 2
    envelope["ciphertext"] = (
        token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    )
    ledger_path.write_text(json.dumps(envelope))
    assert_refused_and_untouched(ledger_path, key=KEY, match="checksum")
    # Even with the checksum fixed, Fernet's MAC catches it.
    envelope["sha256"] = hashlib.sha256(envelope["ciphertext"].encode()).hexdigest()
    ledger_path.write_text(json.dumps(envelope))
    assert_refused_and_untouched(ledger_path, key=KEY, match="decrypt")


@pytest.mark.parametrize("keep", [0, 1, 50, -2])
def test_truncated_ledger_is_refused(ledger_path, keep):
    make_ledger(ledger_path)
    data = ledger_path.read_bytes()
    ledger_path.write_bytes(data[:keep])
    assert_refused_and_untouched(ledger_path, match="JSON")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda env: env.update(format="something-else"), "format"),
        (lambda env: env.update(version=2), "version"),
        (lambda env: env.pop("sha256"), "checksum"),
    ],
)
def test_envelope_problems_are_refused(ledger_path, mutate, match):
    make_ledger(ledger_path)
    envelope = json.loads(ledger_path.read_text())
    mutate(envelope)
    ledger_path.write_text(json.dumps(envelope))
    assert_refused_and_untouched(ledger_path, match=match)


def test_wrong_or_missing_key_is_refused(ledger_path):
    make_ledger(ledger_path, key=KEY)
    assert_refused_and_untouched(ledger_path, key=b"not the key", match="wrong key")
    assert_refused_and_untouched(ledger_path, key=None, match="no key")


def test_key_on_a_plain_ledger_is_refused(ledger_path):
    make_ledger(ledger_path)
    assert_refused_and_untouched(ledger_path, key=KEY, match="not encrypted")


def test_key_file_helper(tmp_path):
    key_file = tmp_path / "ledger.key"
    key_file.write_bytes(KEY + b"\n")
    assert read_key_file(key_file) == KEY
    key_file.write_bytes(b"\n")
    with pytest.raises(ConfigError, match="empty"):
        read_key_file(key_file)
    with pytest.raises(ConfigError, match=r"missing\.key"):
        read_key_file(tmp_path / "missing.key")


# --------------------------------------------------------------------------- #
# Budget enforcement
# --------------------------------------------------------------------------- #


def test_overspending_round_is_refused_and_nothing_recorded(ledger_path):
    ledger = make_ledger(ledger_path, budget=4.0)
    before_bytes = ledger_path.read_bytes()
    spent = ledger.spent_epsilon()
    check = ledger.check_round(noise_multiplier=0.7, sample_rate=0.05, steps=500)
    assert not check.affordable
    assert check.epsilon_before == spent and check.budget == 4.0
    assert check.epsilon_after > 4.0
    with pytest.raises(BudgetExceededError, match="over the budget of 4 by") as err:
        ledger.record_round(round=4, noise_multiplier=0.7, sample_rate=0.05, steps=500)
    assert f"{check.epsilon_after - 4.0:.6g}" in str(err.value)
    assert err.value.exit_code == 3
    assert ledger.spent_epsilon() == spent and ledger.rounds == [1, 2, 3]
    assert ledger_path.read_bytes() == before_bytes
    assert PrivacyLedger.load(ledger_path).rounds == [1, 2, 3]


def test_affordable_round_is_recorded_with_its_check(ledger_path):
    ledger = make_ledger(ledger_path)
    check = ledger.check_round(noise_multiplier=2.0, sample_rate=0.01, steps=100)
    assert check.affordable and "within" in check.reason
    eps = ledger.record_round(round=4, noise_multiplier=2.0, sample_rate=0.01, steps=100)
    assert eps == check.epsilon_after == ledger.spent_epsilon()
    assert ledger.remaining_epsilon() == pytest.approx(8.0 - eps)
    assert eps == epsilon_for_history(ledger.history, delta=DELTA)


def test_duplicate_round_is_refused(ledger_path):
    ledger = make_ledger(ledger_path)
    before = ledger_path.read_bytes()
    with pytest.raises(PrivacyError, match="round 2 is already recorded"):
        ledger.record_round(round=2, noise_multiplier=5.0, sample_rate=0.001, steps=1)
    assert ledger_path.read_bytes() == before


def test_budget_change_is_kept_and_recorded(ledger_path):
    make_ledger(ledger_path, budget=8.0)
    lowered = PrivacyLedger.open(ledger_path, budget_epsilon=1.0, delta=DELTA)
    assert lowered.budget_epsilon == 1.0
    assert lowered.remaining_epsilon() == 0.0  # already past the new budget
    assert not lowered.check_round(noise_multiplier=10.0, sample_rate=0.001, steps=1).affordable
    changes = PrivacyLedger.load(ledger_path).budget_changes
    assert [(c["from"], c["to"]) for c in changes] == [(8.0, 1.0)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delta": 1e-6}, "delta"),
        ({"accountant": "prv"}, "accountant"),
        ({"merchant_id": "someone-else"}, "belongs to merchant"),
    ],
)
def test_mismatched_reopen_is_refused(ledger_path, kwargs, match):
    make_ledger(ledger_path)
    before = ledger_path.read_bytes()
    options = {"budget_epsilon": 8.0, "delta": DELTA, **kwargs}
    with pytest.raises(PrivacyError, match=match):
        PrivacyLedger.open(ledger_path, **options)
    assert ledger_path.read_bytes() == before


def test_declines_are_recorded(ledger_path):
    ledger = make_ledger(ledger_path)
    ledger.record_decline(round=4, reason="would exceed budget")
    declined = PrivacyLedger.load(ledger_path).declined
    assert [(d["round"], d["reason"]) for d in declined] == [(4, "would exceed budget")]


# --------------------------------------------------------------------------- #
# Crash safety and concurrent writers
# --------------------------------------------------------------------------- #


def test_crash_during_write_leaves_the_old_ledger(ledger_path, monkeypatch):
    ledger = make_ledger(ledger_path)
    before = ledger_path.read_bytes()
    spent = ledger.spent_epsilon()

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(PrivacyError, match="nothing was recorded"):
        ledger.record_round(round=4, noise_multiplier=2.0, sample_rate=0.01, steps=100)
    monkeypatch.undo()

    assert ledger_path.read_bytes() == before
    assert ledger.spent_epsilon() == spent and ledger.rounds == [1, 2, 3]
    assert sorted(p.name for p in ledger_path.parent.iterdir()) == ["ledger.json"]  # no temp
    assert PrivacyLedger.load(ledger_path).spent_epsilon() == spent
    # The in-memory ledger is still usable once the disk is.
    ledger.record_round(round=4, noise_multiplier=2.0, sample_rate=0.01, steps=100)
    assert PrivacyLedger.load(ledger_path).rounds == [1, 2, 3, 4]


def test_second_writer_is_refused_instead_of_losing_a_round(ledger_path):
    first = make_ledger(ledger_path)
    second = PrivacyLedger.open(ledger_path, budget_epsilon=8.0, delta=DELTA)
    first.record_round(round=4, noise_multiplier=2.0, sample_rate=0.01, steps=100)
    with pytest.raises(PrivacyError, match="changed on disk"):
        second.record_round(round=5, noise_multiplier=2.0, sample_rate=0.01, steps=100)
    assert PrivacyLedger.load(ledger_path).rounds == [1, 2, 3, 4]


# --------------------------------------------------------------------------- #
# State dicts and other accountants
# --------------------------------------------------------------------------- #


def test_state_dict_round_trip_extends_a_ledger(tmp_path):
    source = make_ledger(tmp_path / "a.json")
    target = PrivacyLedger.open(
        tmp_path / "b.json", budget_epsilon=5.0, delta=DELTA, merchant_id="m7"
    )
    target.load_state_dict(source.state_dict())
    assert target.spent_epsilon() == source.spent_epsilon()
    assert target.budget_epsilon == 5.0  # the node's budget wins over the state's
    assert PrivacyLedger.load(tmp_path / "b.json").entries == source.entries


def test_state_dict_refusals(tmp_path):
    ledger = make_ledger(tmp_path / "a.json")
    state = ledger.state_dict()

    shorter = json.loads(json.dumps(state))
    shorter["entries"].pop()
    with pytest.raises(PrivacyError, match="forget"):
        ledger.load_state_dict(shorter)

    for field, value in [("merchant_id", "m8"), ("delta", 1e-6), ("accountant", "prv")]:
        other = json.loads(json.dumps(state))
        other[field] = value
        with pytest.raises(PrivacyError, match=field):
            ledger.load_state_dict(other)

    forged = json.loads(json.dumps(state))
    forged["entries"][0]["epsilon_after"] = 0.01
    with pytest.raises(PrivacyError, match="records"):
        ledger.load_state_dict(forged)

    rewritten = make_ledger(tmp_path / "c.json").state_dict()
    rewritten["entries"][0]["round"] = 10
    with pytest.raises(PrivacyError, match="rewrites"):
        ledger.load_state_dict(rewritten)
    assert PrivacyLedger.load(tmp_path / "a.json").entries == ledger.entries


def test_epsilon_by_round_under_the_other_accountant(tmp_path):
    ledger = PrivacyLedger.open(tmp_path / "l.json", budget_epsilon=8.0, delta=DELTA)
    ledger.record_round(round=0, noise_multiplier=1.0, sample_rate=0.02, steps=30)
    ledger.record_round(round=1, noise_multiplier=1.2, sample_rate=0.02, steps=30)
    rdp = ledger.epsilon_by_round()
    prv = ledger.epsilon_by_round("prv")
    assert [r for r, _ in prv] == [0, 1]
    assert all(p < r for (_, p), (_, r) in zip(prv, rdp, strict=True))
    assert prv[1][1] == epsilon_for_history(ledger.history, delta=DELTA, accountant="prv")


# --------------------------------------------------------------------------- #
# Property: ε never decreases as rounds are recorded
# --------------------------------------------------------------------------- #

spends = st.builds(
    dict,
    noise_multiplier=st.floats(min_value=0.7, max_value=6.0),
    sample_rate=st.floats(min_value=1e-3, max_value=0.2),
    steps=st.integers(0, 400),
)


@settings(max_examples=15, deadline=None)
@given(st.lists(spends, min_size=1, max_size=6))
def test_epsilon_is_monotone_over_recorded_rounds(rounds):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger.json"
        ledger = PrivacyLedger.open(path, budget_epsilon=1e6, delta=DELTA)
        seen = [ledger.spent_epsilon()]
        for rnd, spend in enumerate(rounds):
            seen.append(ledger.record_round(round=rnd, **spend))
        assert seen == sorted(seen)
        assert [eps for _, eps in PrivacyLedger.load(path).epsilon_by_round()] == seen[1:]
