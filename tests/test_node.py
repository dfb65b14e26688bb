"""A merchant's node: ledger check -> DP training -> record -> update check."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecrec.config import RunConfig, load_config
from ecrec.errors import LedgerCorruptError
from ecrec.model.ranker import Ranker
from ecrec.node import MerchantNode, RoundOutcome, UpdateRejectedError, check_update
from ecrec.privacy.accounting import RoundSpend, epsilon_for_history
from ecrec.privacy.ledger import PrivacyLedger
from ecrec.train.local import plan_round

REPO = Path(__file__).resolve().parents[1]

# -- check_update -----------------------------------------------------------------


def _update(peak: float = 0.5) -> dict[str, np.ndarray]:
    return {
        "a.lora_A.weight": np.full((4, 3), 0.1, np.float32),
        "b.lora_B.weight": np.array([[0.0, -peak], [0.2, 0.3]], np.float32),
        "classifier.bias": np.zeros(1, np.float32),
    }


def _check(state, *, examples=100, secagg=True, max_weight=200.0, clipping_range=8.0) -> None:
    check_update(
        state,
        examples=examples,
        secagg=secagg,
        max_weight=max_weight,
        clipping_range=clipping_range,
    )


def test_check_update_accepts_a_normal_update() -> None:
    _check(_update())
    _check(_update(), examples=200, max_weight=200.0)  # examples == max_weight is fine


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("secagg", [True, False])
def test_check_update_refuses_non_finite(bad: float, secagg: bool) -> None:
    state = _update()
    state["b.lora_B.weight"][1, 0] = bad
    with pytest.raises(UpdateRejectedError, match=re.escape("b.lora_B.weight")):
        _check(state, secagg=secagg)


def test_check_update_refuses_more_examples_than_max_weight() -> None:
    with pytest.raises(UpdateRejectedError, match="max-weight"):
        _check(_update(), examples=201, max_weight=200.0)
    _check(_update(), examples=201, max_weight=200.0, secagg=False)


def test_check_update_refuses_values_secagg_would_clip() -> None:
    # SecAgg+ scales by examples / max_weight = 0.5: 10 -> 5 fits in ±8, 20 -> 10 does not.
    _check(_update(peak=10.0), examples=100, max_weight=200.0)
    with pytest.raises(UpdateRejectedError) as info:
        _check(_update(peak=20.0), examples=100, max_weight=200.0)
    assert "b.lora_B.weight" in str(info.value)
    assert "clipping range" in str(info.value)
    # Just over the edge (the negative peak counts by magnitude).
    with pytest.raises(UpdateRejectedError):
        _check(_update(peak=16.5), examples=100, max_weight=200.0)
    _check(_update(peak=15.5), examples=100, max_weight=200.0)
    # A smaller clipping range refuses what the default accepts.
    with pytest.raises(UpdateRejectedError):
        _check(_update(peak=10.0), examples=100, max_weight=200.0, clipping_range=4.0)
    # Without SecAgg+ nothing is clipped, so large values are fine.
    _check(_update(peak=1e6), examples=100, max_weight=200.0, secagg=False)


# -- MerchantNode -------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_config() -> RunConfig:
    config = load_config(REPO / "configs" / "tiny.toml")
    # 0 means "largest merchant" only in simulation; a node needs the real value.
    return config.replace("federation", max_weight=1000.0).replace("train", device="cpu")


@pytest.fixture
def small_merchant(market) -> pd.DataFrame:
    return market.merchants["m01"]


def _node(
    config: RunConfig,
    frame: pd.DataFrame,
    ledger: Path,
    ranker: Ranker,
    budget: float | None = None,
) -> MerchantNode:
    return MerchantNode(
        merchant_id="m01",
        frame=frame,
        config=config,
        ledger_path=ledger,
        budget_epsilon=budget,
        ranker=ranker,
    )


def _ledger_payload(path: Path) -> dict:
    return json.loads(path.read_text("utf-8"))["payload"]


def test_run_round_returns_an_update_and_records_it(
    node_config, small_merchant, ranker, tiny_initial_state, tmp_path
) -> None:
    ledger_path = tmp_path / "ledgers" / "m01.json"
    node = _node(node_config, small_merchant, ledger_path, ranker)
    assert ledger_path.exists()  # created on construction
    outcome = node.run_round(server_round=1, global_state=tiny_initial_state)

    assert isinstance(outcome, RoundOutcome) and not outcome.declined
    state = outcome.state
    assert state is not None and list(state) == list(tiny_initial_state)
    assert all(a.dtype == np.float32 and np.all(np.isfinite(a)) for a in state.values())
    assert any(not np.array_equal(state[n], tiny_initial_state[n]) for n in state)

    m = outcome.metrics
    rate, steps = plan_round(len(small_merchant), node_config.train)
    sigma = node.noise_multiplier()
    assert m["merchant_id"] == "m01" and m["declined"] == 0
    assert m["examples"] == len(small_merchant)
    assert m["steps"] == steps == node_config.train.local_steps
    assert m["sample_rate"] == pytest.approx(rate)
    assert m["noise_multiplier"] == pytest.approx(sigma) and sigma > 0
    expected_eps = epsilon_for_history(
        [RoundSpend(noise_multiplier=sigma, sample_rate=rate, steps=steps)], delta=1e-5
    )
    assert m["epsilon_spent"] == pytest.approx(expected_eps, rel=1e-9)
    assert 0 < m["epsilon_spent"] < node_config.privacy.budget_epsilon
    assert m["epsilon_remaining"] == pytest.approx(8.0 - m["epsilon_spent"])
    nbytes = sum(a.nbytes for a in state.values())
    assert m["bytes_up"] == 2 * nbytes + 8  # SecAgg+: int64 masked values + weight
    assert math.isfinite(m["train_loss"])

    payload = _ledger_payload(ledger_path)
    assert [e["round"] for e in payload["entries"]] == [1]
    entry = payload["entries"][0]
    assert entry["steps"] == steps
    assert entry["noise_multiplier"] == pytest.approx(sigma)
    assert entry["epsilon_after"] == pytest.approx(m["epsilon_spent"])
    assert payload["declined"] == []


def test_sigma_is_calibrated_to_spend_the_budget_over_all_rounds(
    node_config, small_merchant, ranker, tiny_initial_state, tmp_path
) -> None:
    # tiny.toml plans 2 rounds at ε=8: both fit, a third would overspend.
    node = _node(node_config, small_merchant, tmp_path / "m01.json", ranker)
    first = node.run_round(server_round=1, global_state=tiny_initial_state)
    second = node.run_round(server_round=2, global_state=first.state)
    assert not first.declined and not second.declined
    assert first.metrics["epsilon_spent"] < second.metrics["epsilon_spent"] <= 8.0
    assert second.metrics["epsilon_spent"] == pytest.approx(8.0, rel=0.02)
    third = node.run_round(server_round=3, global_state=second.state)
    assert third.declined and third.metrics["declined"] == 1
    assert "budget" in third.metrics["decline_reason"]
    assert third.metrics["epsilon_spent"] == second.metrics["epsilon_spent"]
    assert node.ledger.rounds == [1, 2]


def test_tiny_budget_declines_and_records_why(
    node_config, small_merchant, ranker, tiny_initial_state, tmp_path
) -> None:
    ledger_path = tmp_path / "m01.json"
    node = _node(node_config, small_merchant, ledger_path, ranker, budget=0.05)
    before = ranker.adapter_state()
    outcome = node.run_round(server_round=1, global_state=tiny_initial_state)

    assert outcome.state is None and outcome.declined
    m = outcome.metrics
    assert m["declined"] == 1
    assert m["steps"] == 0 and m["bytes_up"] == 0
    assert m["epsilon_spent"] == 0.0
    assert m["epsilon_remaining"] == pytest.approx(0.05)
    assert m["budget_epsilon"] == pytest.approx(0.05)
    reason = m["decline_reason"]
    assert "budget" in reason and "0.05" in reason
    # Nothing was trained and nothing was spent.
    for name, array in ranker.adapter_state().items():
        np.testing.assert_array_equal(array, before[name])
    payload = _ledger_payload(ledger_path)
    assert payload["entries"] == []
    assert [(d["round"], d["reason"]) for d in payload["declined"]] == [(1, reason)]
    assert payload["budget_epsilon"] == 0.05


def test_same_round_twice_declines_and_restart_keeps_spend(
    node_config, small_merchant, ranker, tiny_initial_state, tmp_path
) -> None:
    ledger_path = tmp_path / "m01.json"
    node = _node(node_config, small_merchant, ledger_path, ranker)
    done = node.run_round(server_round=1, global_state=tiny_initial_state)
    spent = done.metrics["epsilon_spent"]
    assert spent > 0

    again = node.run_round(server_round=1, global_state=tiny_initial_state)
    assert again.declined and again.metrics["declined"] == 1
    assert "already spent" in again.metrics["decline_reason"]
    assert again.metrics["epsilon_spent"] == spent
    assert node.ledger.spent_epsilon() == spent

    # A restarted node (fresh process) reads the same spend back from disk.
    reopened = _node(node_config, small_merchant, ledger_path, ranker)
    assert reopened.ledger.spent_epsilon() == spent
    assert reopened.ledger.rounds == [1]
    assert [d["round"] for d in reopened.ledger.declined] == [1]
    after_restart = reopened.run_round(server_round=1, global_state=tiny_initial_state)
    assert after_restart.declined
    assert PrivacyLedger.load(ledger_path).spent_epsilon() == spent


def _tamper_entry(path: Path) -> None:
    envelope = json.loads(path.read_text("utf-8"))
    envelope["payload"]["entries"][0]["steps"] = 1  # "we spent less than we did"
    path.write_text(json.dumps(envelope, indent=2), encoding="utf-8")


def _tamper_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _tamper_reset(path: Path) -> None:
    envelope = json.loads(path.read_text("utf-8"))
    envelope["payload"]["entries"] = []
    path.write_text(json.dumps(envelope, indent=2), encoding="utf-8")


@pytest.mark.parametrize("tamper", [_tamper_entry, _tamper_truncate, _tamper_reset])
def test_tampered_ledger_fails_closed(
    node_config, small_merchant, ranker, tiny_initial_state, tmp_path, tamper
) -> None:
    ledger_path = tmp_path / "m01.json"
    node = _node(node_config, small_merchant, ledger_path, ranker)
    node.run_round(server_round=1, global_state=tiny_initial_state)
    tamper(ledger_path)
    tampered = ledger_path.read_bytes()
    with pytest.raises(LedgerCorruptError) as info:
        _node(node_config, small_merchant, ledger_path, ranker)
    assert str(ledger_path) in str(info.value)
    # Fail closed: the corrupt ledger is neither reset nor rewritten.
    assert ledger_path.read_bytes() == tampered


def test_over_max_weight_is_refused_before_spending_epsilon(
    node_config, small_merchant, ranker, tiny_initial_state, tmp_path
) -> None:
    ledger_path = tmp_path / "m01.json"
    config = node_config.replace("federation", max_weight=float(len(small_merchant) - 1))
    node = _node(config, small_merchant, ledger_path, ranker)
    before = ranker.adapter_state()
    with pytest.raises(UpdateRejectedError, match="max-weight"):
        node.run_round(server_round=1, global_state=tiny_initial_state)
    assert _ledger_payload(ledger_path)["entries"] == []
    assert node.ledger.spent_epsilon() == 0.0
    for name, array in ranker.adapter_state().items():
        np.testing.assert_array_equal(array, before[name])
