"""Plain mode (no SecAgg+): hostile or broken updates are dropped naming the merchant
(issue 10, row 4).

Unit tests call :func:`ecrec.federation.screening.screen_updates` and the server's
strategy with hand-built replies (what Flower's legacy fit workflow hands
``aggregate_fit``); the slow test runs the production apps on the simulation engine with
one merchant's reply poisoned after its node answered (``ecrec_simulations.poison``).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.common import Code, FitRes, Parameters, Status, ndarrays_to_parameters
from flwr.common import parameters_to_ndarrays as to_arrays

from ecrec.config import load_config
from ecrec.federation.screening import NORM_FACTOR, screen_updates
from ecrec.federation.server import RoundLog, make_strategy
from ecrec_simulations.poison import KINDS, poisoned

ROOT = Path(__file__).resolve().parents[2]
START = [np.zeros((4, 3), np.float32), np.zeros((2, 4), np.float32), np.zeros(1, np.float32)]


def _update(seed: int, scale: float = 0.01) -> list[np.ndarray]:
    """An honest-looking update: the start plus a small random step."""
    rng = np.random.default_rng(seed)
    return [s + rng.normal(scale=scale, size=s.shape).astype(np.float32) for s in START]


def _reply(
    merchant: Any, arrays: list[np.ndarray] | Parameters, *, node: int, weight: Any = 1
) -> tuple[Any, FitRes]:
    parameters = arrays if isinstance(arrays, Parameters) else ndarrays_to_parameters(arrays)
    metrics = {"trained": True} if merchant is None else {"merchant": merchant, "trained": True}
    res = FitRes(
        status=Status(Code.OK, ""), parameters=parameters, num_examples=weight, metrics=metrics
    )
    return SimpleNamespace(node_id=node), res  # the proxy: only its node id is read


def _honest(n: int = 3) -> list[tuple[Any, FitRes]]:
    return [_reply(f"m0{i}", _update(i), node=i + 1) for i in range(n)]


def _names(results: list[tuple[Any, FitRes]]) -> list[str]:
    return [str(res.metrics.get("merchant")) for _, res in results]


def test_honest_updates_are_all_kept() -> None:
    kept, rejected = screen_updates(_honest(), reference=START)
    assert _names(kept) == ["m00", "m01", "m02"] and rejected == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("peers", [1, 2], ids=["with-1-honest-peer", "with-2-honest-peers"])
def test_a_poisoned_update_is_dropped_naming_its_merchant(kind: str, peers: int) -> None:
    """NaN, Inf, a wrong shape, a missing array, a non-float dtype, 100x the step: the
    merchant is named with the reason, and every honest update is kept -- even when only
    one honest update is there to compare a 100x one with."""
    results = _honest(peers)
    results.insert(1, _reply("m09", poisoned(kind, _update(9), START), node=9))
    kept, rejected = screen_updates(results, reference=START)
    assert _names(kept) == [f"m0{i}" for i in range(peers)]
    assert [r.merchant for r in rejected] == ["m09"]
    expected = {
        "nan": "non-finite",
        "inf": "non-finite",
        "shape": "shape (5, 3), expected (4, 3)",
        "missing": "2 arrays, the global model 3",
        "int": "dtype int32",
        "scale100": f"over {NORM_FACTOR:g}x the median",
    }[kind]
    assert expected in rejected[0].reason and str(rejected[0]).startswith("m09: ")


@pytest.mark.parametrize(
    ("reply", "who", "reason"),
    [
        (_reply("m09", Parameters(tensors=[b"garbage"] * 3, tensor_type="numpy.ndarray"), node=9),
         "m09", "cannot be decoded"),
        (_reply("m09", _update(9), node=9, weight=1_000_000), "m09", "uniform weighting takes 1"),
        (_reply("m09", _update(9), node=9, weight=0), "m09", "uniform weighting takes 1"),
        (_reply("m09", _update(9), node=9, weight=1.5), "m09", "not an integer"),
        (_reply("../x", _update(9), node=9), "node 9", "is not a merchant id"),
        (_reply(None, _update(9), node=9), "node 9", "no merchant name"),
        (_reply("m00", _update(9), node=9), "m00", "already answered this round (node 1)"),
    ],
    ids=["undecodable", "weight-1e6", "weight-0", "weight-float", "bad-name", "no-name",
         "duplicate-name"],
)  # fmt: skip
def test_a_reply_that_lies_about_itself_is_dropped(reply: Any, who: str, reason: str) -> None:
    """Before: undecodable bytes crashed the round (numpy's ValueError in aggregate_fit), a
    weight of 10^6 went into FedAvg's weighted mean and swamped it, and a node could
    answer as another merchant."""
    kept, rejected = screen_updates([*_honest(), reply], reference=START)
    assert _names(kept) == ["m00", "m01", "m02"]
    assert [(r.merchant, reason in r.reason) for r in rejected] == [(who, True)], rejected


def test_example_weighting_takes_counts_up_to_max_weight() -> None:
    results = [_reply(f"m0{i}", _update(i), node=i + 1, weight=w) for i, w in enumerate([5, 40])]
    results.append(_reply("m09", _update(9), node=9, weight=41))
    kept, rejected = screen_updates(results, reference=START, weighting="examples", max_weight=40.0)
    assert _names(kept) == ["m00", "m01"] and "max-weight=40" in rejected[0].reason


def test_plain_mode_cannot_detect_a_poisoned_update_of_ordinary_size() -> None:
    """The documented limit: an update pushed the wrong way (here: an honest step with its
    sign flipped, as a label-flipping merchant's roughly is) has an ordinary norm, shape and
    dtype, so it is kept. Screening stops broken and blown-up updates, not poisoning."""
    flipped = [s - (a - s) for a, s in zip(_update(9), START, strict=True)]
    kept, rejected = screen_updates([*_honest(), _reply("m09", flipped, node=9)], reference=START)
    assert "m09" in _names(kept) and rejected == []


def test_a_single_update_has_nothing_to_compare_its_size_with() -> None:
    big = [s + 1e6 for s in START]
    kept, rejected = screen_updates([_reply("m09", big, node=9)], reference=START)
    assert _names(kept) == ["m09"] and rejected == []  # the documented limit


def test_the_server_aggregates_without_the_rejected_update_and_names_it() -> None:
    """The strategy the ServerApp runs: FedAvg of the honest updates only; the round's
    record in metrics.jsonl names the merchant and says why."""
    config = load_config(ROOT / "configs" / "tiny.toml").replace(
        "federation", secagg=False, min_trainers=2
    )
    rounds = {1: RoundLog(1)}
    strategy = make_strategy(config, initial=START, rounds=rounds, fit_config=lambda r: {})
    honest = _honest(2)
    results = [*honest, _reply("m09", poisoned("nan", _update(9), START), node=9)]
    aggregated, _ = strategy.aggregate_fit(1, results, [])
    assert aggregated is not None
    first, second = (to_arrays(res.parameters) for _, res in honest)
    mean = [(a + b) / 2 for a, b in zip(first, second, strict=True)]
    for got, want in zip(to_arrays(aggregated), mean, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    record = rounds[1].record()
    assert record["trained"] == ["m00", "m01"]
    assert list(record["rejected"]) == ["m09"] and "non-finite" in record["rejected"]["m09"]
    assert record["failures"] == 1 and record["skipped"] is None


def test_too_few_updates_left_after_screening_skip_the_round() -> None:
    config = load_config(ROOT / "configs" / "tiny.toml").replace(
        "federation", secagg=False, min_trainers=3
    )
    rounds = {1: RoundLog(1)}
    strategy = make_strategy(config, initial=START, rounds=rounds, fit_config=lambda r: {})
    results = [*_honest(2), _reply("m09", poisoned("inf", _update(9), START), node=9)]
    assert strategy.aggregate_fit(1, results, [])[0] is None
    assert "min-trainers=3" in rounds[1].skipped and list(rounds[1].rejected) == ["m09"]


# --------------------------------------------------------------------------- simulation


@pytest.mark.slow
def test_a_poisoned_merchant_is_dropped_and_the_federation_goes_on(tmp_path: Path) -> None:
    """3 merchants in plain mode on the simulation engine; after its node answered, m01's
    reply carries a NaN in round 1 and a 100x update in round 2. Both rounds aggregate the
    other two, and each round's record names m01 and the reason."""
    from ecrec.node.policy import NodePolicy
    from ecrec.privacy.ledger import PrivacyLedger
    from ecrec.runfolder import RunFolder
    from ecrec.simulation import simulated_nodes
    from ecrec_simulations.poison import simulate_with_poison

    config = load_config(ROOT / "configs" / "tiny.toml").replace("federation", rounds=2)
    config = config.replace("federation", secagg=False, min_trainers=2)
    config = config.replace("report", explain=False, html=False)
    config = config.replace("privacy", noise_multiplier=1.5, budget_epsilon=50.0)
    policy = NodePolicy(require_secagg=False, min_trainers=2, budget_epsilon=50.0)
    out = tmp_path / "run"
    summary = simulate_with_poison(
        config, out=out, merchant="m01", kinds={1: "nan", 2: "scale100"}, node_policy=policy
    )
    one, two = summary.rounds[1], summary.rounds[2]
    assert one["trained"] == two["trained"] == ["m00", "m02"]
    assert not one["skipped"] and not two["skipped"]
    assert list(one["rejected"]) == ["m01"] and "non-finite" in one["rejected"]["m01"]
    assert list(two["rejected"]) == ["m01"] and "median" in two["rejected"]["m01"]
    run = RunFolder(out)
    for server_round in (1, 2):
        state = run.load_checkpoint(server_round)
        assert all(np.all(np.isfinite(a)) for a in state.values())
    assert math.isfinite(two["ndcg@10"])
    # m01 trained both rounds: its ledger says so, though the server used neither update.
    for node in simulated_nodes(out / "nodes.toml"):
        if node.ledger_path.stem == "m01":
            ledger = PrivacyLedger.load(
                node.ledger_path, key_file=node.key_file, anchor_path=node.anchor_path
            )
            assert ledger.rounds == [1, 2]
