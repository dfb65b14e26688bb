"""A merchant's node against a hostile server, a spent budget and a damaged ledger.

Real rounds on the tiny ranker (CPU, two DP steps on the small merchant's ~40 rows
and ~6 shoppers), a ledger made by ``PrivacyLedger.init`` in ``tmp_path`` as the merchant
would, and :class:`NodeSettings` built directly. A decline must leave the ledger's
bytes, the ranker and everything the server sees exactly as they were, and say why
(to the server: only what the policy allows; in the node's journal: everything).
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ecrec.config import RunConfig, load_config
from ecrec.data.schema import USER_ID
from ecrec.errors import EcrecError, LedgerCorruptError, LedgerMissingError, ModelError
from ecrec.model.ranker import Ranker
from ecrec.node import (
    BUDGET_DECLINE,
    MerchantNode,
    NodePolicy,
    NodeSettings,
    RoundOutcome,
    RoundRequest,
    UpdateRejectedError,
    check_update,
    check_weight,
)
from ecrec.node.settings import default_anchor
from ecrec.privacy.accounting import (
    RoundSpend,
    epsilon_for_history,
    noise_multiplier_for_target,
)
from ecrec.privacy.ledger import PrivacyLedger
from ecrec.train.local import dp_units, plan_round

REPO = Path(__file__).resolve().parents[2]
MERCHANT = "m01"
POLICY = NodePolicy()

# -- check_update / check_weight (pure) ------------------------------------------------


def _update(peak: float = 0.5) -> dict[str, np.ndarray]:
    return {
        "a.lora_A.weight": np.full((4, 3), 0.1, np.float32),
        "b.lora_B.weight": np.array([[0.0, -peak], [0.2, 0.3]], np.float32),
        "classifier.bias": np.zeros(1, np.float32),
    }


def _check(state, *, weight=100.0, secagg=True, max_weight=200.0, clipping_range=8.0) -> None:
    check_update(
        state, weight=weight, secagg=secagg, max_weight=max_weight, clipping_range=clipping_range
    )


def test_check_update_accepts_a_normal_update() -> None:
    _check(_update())
    _check(_update(), weight=200.0, max_weight=200.0)  # weight == max_weight is fine


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("secagg", [True, False])
def test_check_update_refuses_non_finite(bad: float, secagg: bool) -> None:
    state = _update()
    state["b.lora_B.weight"][1, 0] = bad
    with pytest.raises(UpdateRejectedError, match=re.escape("b.lora_B.weight")):
        _check(state, secagg=secagg)


def test_check_weight_refuses_more_than_max_weight_only_under_secagg() -> None:
    with pytest.raises(UpdateRejectedError, match="max-weight"):
        check_weight(weight=201.0, secagg=True, max_weight=200.0)
    with pytest.raises(UpdateRejectedError, match="max-weight"):
        _check(_update(), weight=201.0, max_weight=200.0)
    check_weight(weight=200.0, secagg=True, max_weight=200.0)
    check_weight(weight=201.0, secagg=False, max_weight=200.0)
    _check(_update(), weight=201.0, max_weight=200.0, secagg=False)


def test_check_update_refuses_values_secagg_would_clip() -> None:
    # SecAgg+ scales by weight / max_weight = 0.5: 10 -> 5 fits in ±8, 20 -> 10 does not.
    _check(_update(peak=10.0))
    with pytest.raises(UpdateRejectedError) as info:
        _check(_update(peak=20.0))
    assert "b.lora_B.weight" in str(info.value) and "clipping range" in str(info.value)
    with pytest.raises(UpdateRejectedError):  # just over the edge; a negative peak counts
        _check(_update(peak=16.5))
    _check(_update(peak=15.5))
    with pytest.raises(UpdateRejectedError):
        _check(_update(peak=10.0), clipping_range=4.0)
    _check(_update(peak=1e6), secagg=False)  # nothing is clipped without SecAgg+


# -- a node on disk --------------------------------------------------------------------


@pytest.fixture(scope="module")
def honest() -> RunConfig:
    """What an honest server sends: the tiny config (2 rounds, 2 DP steps, ε 8), with the
    LoRA cross-encoder of the ``tiny_initial_state`` fixture (the bigger update; the hybrid
    default runs through the node in tests/federation)."""
    config = load_config(REPO / "configs" / "tiny.toml").replace("train", device="cpu")
    return config.replace("model", architecture="cross-encoder")


@pytest.fixture(scope="module")
def shoppers(market) -> pd.DataFrame:
    frame = market.merchants[MERCHANT]
    # The matrix's δ = 0.2 is above 1/n only for n > 5 shoppers; several rows per shopper.
    assert USER_ID in frame.columns and 6 <= frame[USER_ID].nunique() < len(frame) <= 100
    return frame


@pytest.fixture(scope="module")
def rows_only(shoppers: pd.DataFrame) -> pd.DataFrame:
    """The same merchant with no shopper ids: the DP unit is one impression."""
    return shoppers.drop(columns=[USER_ID])


@pytest.fixture
def global_state(tiny_initial_state) -> dict[str, np.ndarray]:
    """The server's global adapter: not the ranker's current one, so loading it shows."""
    return {name: array + np.float32(0.01) for name, array in tiny_initial_state.items()}


@dataclass
class NodeOnDisk:
    """A merchant's files as ``ecrec privacy init`` leaves them, and a node over them."""

    settings: NodeSettings
    frame: pd.DataFrame
    ranker: Ranker

    def node(self) -> MerchantNode:
        """A fresh node process on the same files."""
        return MerchantNode(settings=self.settings, frame=self.frame, ranker=self.ranker)

    def files(self) -> dict[str, bytes | None]:
        paths = {"ledger": self.settings.ledger_path, "anchor": self.settings.anchor_path}
        return {k: p.read_bytes() if p.exists() else None for k, p in paths.items()}

    def ledger(self) -> PrivacyLedger:
        return PrivacyLedger.load(
            self.settings.ledger_path,
            key_file=self.settings.key_file,
            anchor_path=self.settings.anchor_path,
        )

    def journal(self) -> list[dict[str, Any]]:
        return self.node().journal.records()


def _on_disk(
    tmp_path: Path,
    frame: pd.DataFrame,
    ranker: Ranker,
    policy: NodePolicy = POLICY,
    *,
    delta: float = 1e-5,
) -> NodeOnDisk:
    key_file = tmp_path / "secrets" / f"{MERCHANT}.key"
    settings = NodeSettings(
        data_path=tmp_path / f"{MERCHANT}.parquet",  # unused: the frame is given
        ledger_path=tmp_path / "ledgers" / f"{MERCHANT}.json",
        key_file=key_file,
        anchor_path=default_anchor(key_file),
        journal_path=tmp_path / "journals" / f"{MERCHANT}.jsonl",
        policy=policy,
    )
    PrivacyLedger.init(
        settings.ledger_path,
        merchant_id=MERCHANT,
        budget_epsilon=policy.budget_epsilon,
        delta=delta,
        accountant=policy.accountant,
        unit=policy.unit_for(has_user_ids=USER_ID in frame.columns),
        key_file=key_file,
        anchor_path=settings.anchor_path,
    )
    return NodeOnDisk(settings=settings, frame=frame, ranker=ranker)


def _round(config: RunConfig, state, server_round: int = 1) -> RoundRequest:
    return RoundRequest(server_round=server_round, config=config, global_state=state)


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# -- the hostile-server matrix ---------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    name: str
    section: str
    changes: dict[str, Any]
    setting: str
    policy: dict[str, Any] = field(default_factory=dict)
    shopper_ids: bool = True


NODE_HOSTILE = [
    Hostile("non-private", "train", {"dp": False}, "train.dp"),
    Hostile("seed-0", "train", {"seed": 0}, "train.seed"),
    Hostile("seed", "train", {"seed": 2024}, "train.seed"),
    Hostile("delta-0.5", "privacy", {"delta": 0.5}, "privacy.delta"),
    # The merchant allows δ up to 0.5, but never above 1/n for its 6 shoppers.
    Hostile("delta-above-1/n", "privacy", {"delta": 0.2}, "privacy.delta", {"max_delta": 0.5}),
    Hostile("other-accountant", "privacy", {"accountant": "rdp"}, "privacy.accountant"),
    Hostile("low-sigma", "privacy", {"noise_multiplier": 0.1}, "privacy.noise-multiplier"),
    Hostile("nan-sigma", "privacy", {"noise_multiplier": math.nan}, "privacy.noise-multiplier"),
    Hostile("no-secagg", "federation", {"secagg": False}, "federation.secagg"),
    Hostile(
        "low-threshold",
        "federation",
        {"reconstruction_threshold": 1, "num_shares": 3},
        "federation.reconstruction-threshold",
    ),
    Hostile("one-trainer", "federation", {"min_trainers": 1}, "federation.min-trainers"),
    Hostile(
        "example-weighting",
        "federation",
        {"weighting": "examples", "max_weight": 1000.0},
        "federation.weighting",
    ),
    Hostile("row-unit", "privacy", {"unit": "row"}, "privacy.unit"),
    Hostile("user-unit", "privacy", {"unit": "user"}, "privacy.unit", shopper_ids=False),
    Hostile("base-model-path", "model", {"base_model": "/tmp/evil-model"}, "model.base-model"),
]


@pytest.mark.parametrize("case", NODE_HOSTILE, ids=lambda c: c.name)
def test_node_declines_hostile_request_and_changes_nothing(
    case: Hostile, honest, shoppers, rows_only, ranker, global_state, tmp_path
) -> None:
    frame = shoppers if case.shopper_ids else rows_only
    disk = _on_disk(tmp_path, frame, ranker, dataclasses.replace(POLICY, **case.policy))
    files, adapters = disk.files(), ranker.adapter_state()
    spent = disk.ledger().spent_epsilon()

    outcome = disk.node().run_round(
        _round(honest.replace(case.section, **case.changes), global_state)
    )

    assert isinstance(outcome, RoundOutcome) and outcome.declined and outcome.state is None
    assert outcome.weight == 0.0 and outcome.disclosed == {}
    assert outcome.decline_reason and case.setting in outcome.decline_reason
    assert disk.files() == files  # not one byte of the ledger or its anchor changed
    assert disk.ledger().spent_epsilon() == spent == 0.0 and disk.ledger().rounds == []
    _assert_same(ranker.adapter_state(), adapters)  # the global state was not even loaded
    (record,) = disk.journal()
    assert record["event"] == "declined" and record["round"] == 1
    assert case.setting in record["settings"]
    assert record["told_server"] == outcome.decline_reason


# -- honest rounds -----------------------------------------------------------------------


def test_honest_round_releases_only_the_update_and_who_trained(
    honest, shoppers, ranker, global_state, tmp_path
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker)
    node = disk.node()
    outcome = node.run_round(_round(honest, global_state))

    assert not outcome.declined and outcome.decline_reason is None
    state = outcome.state
    assert state is not None and list(state) == list(global_state)
    assert all(a.dtype == np.float32 and np.all(np.isfinite(a)) for a in state.values())
    assert any(not np.array_equal(state[n], global_state[n]) for n in state)
    _assert_same(state, ranker.adapter_state())
    # Minimal disclosure: who answered and that it trained; uniform weight.
    assert outcome.disclosed == {"merchant": MERCHANT, "trained": True}
    assert outcome.weight == 1.0

    # The spend is on disk, per shopper, at the planned rate and steps.
    groups = dp_units(shoppers, unit="user", max_rows_per_user=honest.privacy.max_rows_per_user)
    rate, steps = plan_round(groups.n_units, honest.train)
    ledger = disk.ledger()
    assert ledger.unit == "user" and ledger.rounds == [1]
    (entry,) = ledger.entries
    assert (entry["sample_rate"], entry["steps"]) == (rate, steps)
    sigma = entry["noise_multiplier"]
    assert sigma >= POLICY.min_noise_multiplier
    expected = epsilon_for_history(
        [RoundSpend(noise_multiplier=sigma, sample_rate=rate, steps=steps)],
        delta=1e-5,
        accountant=POLICY.accountant,
    )
    assert ledger.spent_epsilon() == pytest.approx(expected, rel=1e-9)
    assert 0 < ledger.spent_epsilon() < POLICY.budget_epsilon
    # What stays on the node: the journal has the detail the server does not get.
    (record,) = disk.journal()
    assert record["event"] == "trained" and record["round"] == 1
    assert record["unit"] == "user" and record["units"] == groups.n_units
    assert (groups.n_units, record["rows"]) == (shoppers[USER_ID].nunique(), len(shoppers))
    assert record["epsilon_spent"] == pytest.approx(ledger.spent_epsilon())
    assert record["noise_multiplier"] == pytest.approx(sigma)
    assert record["disclosed"] == outcome.disclosed
    assert not disk.settings.journal_path.with_suffix(".sent").exists()  # kept only on request


def test_disclose_epsilon_adds_exactly_epsilon_accountant_and_unit(
    honest, shoppers, ranker, global_state, tmp_path
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker, NodePolicy(disclose_epsilon=True))
    outcome = disk.node().run_round(_round(honest, global_state))
    ledger = disk.ledger()
    assert outcome.disclosed == {
        "merchant": MERCHANT,
        "trained": True,
        "epsilon-spent": pytest.approx(ledger.spent_epsilon()),
        "epsilon-remaining": pytest.approx(ledger.remaining_epsilon()),
        "accountant": POLICY.accountant,
        "unit": "user",
    }
    assert outcome.weight == 1.0


def test_planned_rounds_fit_and_the_next_is_declined_without_disclosing_epsilon(
    honest, shoppers, ranker, global_state, tmp_path
) -> None:
    """σ is calibrated so ``federation.rounds`` (2) spend the budget; a restarted node
    (a fresh MerchantNode on the same files) keeps the spend, declines round 3 and
    will not repeat round 2."""
    disk = _on_disk(tmp_path, shoppers, ranker)
    first = disk.node().run_round(_round(honest, global_state, 1))
    second = disk.node().run_round(_round(honest, first.state, 2))
    assert not first.declined and not second.declined
    after_first = disk.ledger().epsilon_by_round()[0][1]
    assert after_first < 0.8 * POLICY.budget_epsilon  # σ spreads the budget over both rounds
    spent = disk.ledger().spent_epsilon()
    assert disk.ledger().rounds == [1, 2]
    assert POLICY.budget_epsilon * 0.9 < spent <= POLICY.budget_epsilon
    files, adapters = disk.files(), ranker.adapter_state()

    restarted = disk.node()
    assert restarted.ledger.spent_epsilon() == spent
    third = restarted.run_round(_round(honest, second.state, 3))

    assert third.declined and third.state is None
    assert third.decline_reason == BUDGET_DECLINE  # no ε figures reach the server
    assert not re.search(r"\d\.\d", third.decline_reason)
    assert disk.files() == files and disk.ledger().spent_epsilon() == spent
    _assert_same(ranker.adapter_state(), adapters)
    record = disk.journal()[-1]
    assert record["event"] == "declined" and record["round"] == 3
    assert record["settings"] == ["privacy budget"]
    assert "over the budget" in record["reason"] and f"{spent:.6g}" in record["reason"]
    assert record["told_server"] == BUDGET_DECLINE
    # ... and the restarted node will not repeat a round it has spent.
    again = restarted.run_round(_round(honest, first.state, 2))
    assert again.declined and "round 2 is already spent" in again.decline_reason
    assert disk.files() == files


@pytest.mark.parametrize("disclose", [False, True])
def test_unaffordable_round_is_declined_before_training(
    disclose: bool, honest, shoppers, ranker, global_state, tmp_path
) -> None:
    policy = NodePolicy(budget_epsilon=0.05, disclose_epsilon=disclose)
    disk = _on_disk(tmp_path, shoppers, ranker, policy)
    files, adapters = disk.files(), ranker.adapter_state()
    # The server pins σ at the node's floor: one round costs far more than ε = 0.05.
    request = honest.replace("privacy", noise_multiplier=POLICY.min_noise_multiplier)
    outcome = disk.node().run_round(_round(request, global_state))
    assert outcome.declined and outcome.state is None
    if disclose:
        assert "over the budget of 0.05" in outcome.decline_reason
    else:
        assert outcome.decline_reason == BUDGET_DECLINE
    assert disk.files() == files
    _assert_same(ranker.adapter_state(), adapters)
    assert disk.journal()[-1]["reason"].startswith("privacy budget: round would take ε")


def test_epsilon_per_round_cap_declines(honest, shoppers, ranker, global_state, tmp_path):
    disk = _on_disk(tmp_path, shoppers, ranker, NodePolicy(max_epsilon_per_round=0.01))
    files = disk.files()
    outcome = disk.node().run_round(_round(honest, global_state))
    assert outcome.declined and "epsilon per round" in outcome.decline_reason
    assert disk.files() == files


def test_round_already_in_the_ledger_is_declined(
    honest, shoppers, ranker, global_state, tmp_path
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker)
    PrivacyLedger.open(
        disk.settings.ledger_path,
        key_file=disk.settings.key_file,
        anchor_path=disk.settings.anchor_path,
    ).record_round(round=1, noise_multiplier=2.0, sample_rate=1.0, steps=2)
    files, spent = disk.files(), disk.ledger().spent_epsilon()
    adapters = ranker.adapter_state()
    outcome = disk.node().run_round(_round(honest, global_state, 1))
    assert outcome.declined and "already spent" in outcome.decline_reason
    assert disk.files() == files and disk.ledger().spent_epsilon() == spent
    _assert_same(ranker.adapter_state(), adapters)


def test_allowed_example_weighting_over_max_weight_is_refused_before_spending(
    honest, shoppers, ranker, global_state, tmp_path
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker, NodePolicy(disclose_example_count=True))
    files, adapters = disk.files(), ranker.adapter_state()
    request = honest.replace("federation", weighting="examples", max_weight=len(shoppers) - 1.0)
    with pytest.raises(UpdateRejectedError, match="max-weight"):
        disk.node().run_round(_round(request, global_state))
    assert disk.files() == files and disk.ledger().spent_epsilon() == 0.0
    _assert_same(ranker.adapter_state(), adapters)


def test_keep_sent_updates_keeps_exactly_what_was_released(
    honest, shoppers, ranker, global_state, tmp_path
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker, NodePolicy(keep_sent_updates=True))
    outcome = disk.node().run_round(_round(honest, global_state, 7))
    assert outcome.state is not None
    kept = disk.settings.journal_path.with_suffix(".sent") / "round_0007.npz"
    with np.load(kept) as saved:
        assert set(saved.files) == {*outcome.state, "__weight__"}
        assert float(saved["__weight__"]) == outcome.weight == 1.0
        for name, array in outcome.state.items():
            assert saved[name].dtype == array.dtype
            np.testing.assert_array_equal(saved[name], array, err_msg=name)


def test_a_server_budget_above_the_merchants_does_not_lower_the_noise(
    honest, shoppers, ranker, global_state, tmp_path
) -> None:
    """σ is calibrated to the smaller of the run's and the merchant's budget over all
    planned rounds: a server asking for ε = 10⁴ gets the noise of the merchant's ε = 8."""
    disk = _on_disk(tmp_path, shoppers, ranker)
    greedy = honest.replace("privacy", budget_epsilon=1e4)
    outcome = disk.node().run_round(_round(greedy, global_state))
    assert not outcome.declined
    (entry,) = disk.ledger().entries
    rate, steps = plan_round(shoppers[USER_ID].nunique(), honest.train)
    calibrated = noise_multiplier_for_target(
        target_epsilon=POLICY.budget_epsilon,
        delta=1e-5,
        sample_rate=rate,
        steps=steps * honest.federation.rounds,
        accountant=POLICY.accountant,
    )
    assert entry["noise_multiplier"] == pytest.approx(calibrated, rel=1e-9)
    assert disk.ledger().spent_epsilon() < 0.8 * POLICY.budget_epsilon


@pytest.mark.parametrize(
    ("policy", "section", "changes", "leak"),
    [
        ({}, "privacy", {"delta": 0.5}, r"\b{units}\b"),
        ({"max_epsilon_per_round": 0.01}, None, {}, r"ε=\d"),
    ],
    ids=["delta-tells-units", "cap-tells-epsilon"],
)
def test_declines_do_not_tell_the_server_what_the_policy_keeps(
    policy, section, changes, leak, honest, shoppers, ranker, global_state, tmp_path
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker, NodePolicy(**policy))
    request = honest.replace(section, **changes) if section else honest
    outcome = disk.node().run_round(_round(request, global_state))
    assert outcome.declined
    units = shoppers[USER_ID].nunique()
    assert not re.search(leak.format(units=units), outcome.decline_reason), outcome.decline_reason


# -- requests the node cannot honour: no update, no spend ----------------------------


@pytest.mark.parametrize(
    ("section", "changes"),
    [
        ("train", {"grad_sample_mode": "ghost"}),  # ghost clipping is per row, not per shopper
    ],
    ids=["ghost-per-shopper"],
)
def test_request_the_node_cannot_honour_releases_nothing_and_spends_nothing(
    section, changes, honest, shoppers, ranker, global_state, tmp_path
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker)
    files = disk.files()
    try:
        outcome: RoundOutcome | None = disk.node().run_round(
            _round(honest.replace(section, **changes), global_state)
        )
    except EcrecError:
        outcome = None
    assert outcome is None or outcome.declined
    assert disk.files() == files
    assert "trained" not in {r["event"] for r in disk.journal()}


@pytest.mark.parametrize(
    ("global_state_of", "error"),
    [
        (lambda state: list(state.values())[:-1], UpdateRejectedError),  # arrays missing
        (lambda state: {k: np.full_like(v, np.nan) for k, v in state.items()}, ModelError),
    ],
    ids=["wrong-count", "nan"],
)
def test_hostile_global_state_is_refused_before_spending(
    global_state_of, error, honest, shoppers, ranker, global_state, tmp_path
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker)
    files = disk.files()
    with pytest.raises(error):
        disk.node().run_round(_round(honest, global_state_of(global_state)))
    assert disk.files() == files


# -- the ledger fails closed -----------------------------------------------------------


def _flip_a_byte(disk: NodeOnDisk, before: bytes) -> None:
    path = disk.settings.ledger_path
    data = bytearray(path.read_bytes())
    at = data.index(b'"steps": ') + len(b'"steps": ')
    data[at] = ord("1") if data[at] != ord("1") else ord("0")  # "we spent less than we did"
    path.write_bytes(bytes(data))


def _truncate(disk: NodeOnDisk, before: bytes) -> None:
    path = disk.settings.ledger_path
    path.write_bytes(path.read_bytes()[:-40])


def _roll_back(disk: NodeOnDisk, before: bytes) -> None:
    disk.settings.ledger_path.write_bytes(before)  # a validly sealed, older copy


def _other_key(disk: NodeOnDisk, before: bytes) -> None:
    disk.settings.key_file.write_bytes(bytes(32))


def _delete_ledger(disk: NodeOnDisk, before: bytes) -> None:
    disk.settings.ledger_path.unlink()


def _delete_anchor(disk: NodeOnDisk, before: bytes) -> None:
    disk.settings.anchor_path.unlink()


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (_flip_a_byte, LedgerCorruptError),
        (_truncate, LedgerCorruptError),
        (_roll_back, LedgerCorruptError),
        (_other_key, LedgerCorruptError),
        (_delete_ledger, LedgerMissingError),
        (_delete_anchor, LedgerMissingError),
    ],
    ids=lambda value: getattr(value, "__name__", "").strip("_"),
)
def test_damaged_ledger_makes_the_node_refuse_to_train(
    damage, error, honest, shoppers, ranker, global_state, tmp_path
) -> None:
    disk = _on_disk(tmp_path, shoppers, ranker)
    before = disk.settings.ledger_path.read_bytes()
    PrivacyLedger.open(
        disk.settings.ledger_path,
        key_file=disk.settings.key_file,
        anchor_path=disk.settings.anchor_path,
    ).record_round(round=1, noise_multiplier=2.0, sample_rate=1.0, steps=2)
    damage(disk, before)
    files, adapters = disk.files(), ranker.adapter_state()

    with pytest.raises(error) as info:
        disk.node().run_round(_round(honest, global_state, 2))

    message = str(info.value)
    assert "\n" not in message
    assert str(disk.settings.ledger_path) in message or str(disk.settings.anchor_path) in message
    assert disk.files() == files  # neither reset nor rewritten
    _assert_same(ranker.adapter_state(), adapters)
    assert disk.journal() == []


def test_node_never_creates_a_ledger(honest, shoppers, ranker, global_state, tmp_path):
    disk = _on_disk(tmp_path, shoppers, ranker)
    shutil.rmtree(disk.settings.ledger_path.parent)
    disk.settings.anchor_path.unlink()
    with pytest.raises(LedgerMissingError):
        disk.node().run_round(_round(honest, global_state))
    assert not disk.settings.ledger_path.exists() and not disk.settings.anchor_path.exists()


def test_a_node_tokenises_its_rows_once_across_rounds(
    honest, shoppers, ranker, global_state, tmp_path, monkeypatch
) -> None:
    """Issue 12.7: a node encodes its data once; later rounds (each a fresh process in a
    deployment) read the tensors back from the node's cache."""
    disk = _on_disk(tmp_path, shoppers, ranker, NodePolicy(budget_epsilon=50.0))
    calls = []
    original = type(ranker).training_inputs

    def counting(self, frame):
        calls.append(len(frame))
        return original(self, frame)

    monkeypatch.setattr(type(ranker), "training_inputs", counting)
    request = honest.replace("privacy", noise_multiplier=2.0, budget_epsilon=50.0)
    first = disk.node().run_round(_round(request, global_state, 1))
    second = disk.node().run_round(_round(request, first.state, 2))  # a fresh node object
    assert not first.declined and not second.declined
    assert len(calls) == 1
    cached = list(disk.settings.journal_path.with_suffix(".cache").glob("*.pt"))
    assert len(cached) == 1 and cached[0].stat().st_mode & 0o077 == 0
