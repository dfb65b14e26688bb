"""Federation acceptance tests on Flower's simulation engine (tiny ranker, 3 merchants).

Each simulation starts Ray and takes ~30-60 s on 2 cores, so they are marked slow;
CI runs them. Every simulated node applies a node policy written here, as a
merchant would; the ServerApp and ClientApp are the production objects.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecrec.config import RunConfig, load_config
from ecrec.errors import EcrecError
from ecrec.federation.simulation import simulate
from ecrec.node.policy import NodePolicy
from ecrec.privacy.ledger import PrivacyLedger
from ecrec.runfolder import RunFolder
from ecrec.simulation import simulated_nodes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MERCHANTS = ("m00", "m01", "m02")


def _tiny(rounds: int = 2, **train: Any) -> RunConfig:
    config = load_config(ROOT / "configs" / "tiny.toml").replace("federation", rounds=rounds)
    config = config.replace("report", explain=False, html=False)
    return config.replace("train", **train) if train else config


def _policy(**changes: Any) -> NodePolicy:
    return NodePolicy(**changes)


def _affordable(config: RunConfig) -> RunConfig:
    """An explicit σ and a roomy planned budget, so extra (resumed) rounds really train:
    with σ calibrated, a 1-round plan spends the whole budget in round 1."""
    return config.replace("privacy", noise_multiplier=1.5, budget_epsilon=50.0)


ROOMY = NodePolicy(budget_epsilon=50.0)


def _ledger(out: Path, merchant: str) -> PrivacyLedger:
    for node in simulated_nodes(out / "nodes.toml"):
        if node.ledger_path.stem == merchant:
            return PrivacyLedger.load(
                node.ledger_path, key_file=node.key_file, anchor_path=node.anchor_path
            )
    raise AssertionError(f"no node for {merchant}")


def _sent(out: Path, merchant: str, server_round: int) -> tuple[float, dict[str, np.ndarray]]:
    path = out / "journals" / f"{merchant}.sent" / f"round_{server_round:04d}.npz"
    with np.load(path) as data:
        return float(data["__weight__"]), {k: data[k] for k in data.files if k != "__weight__"}


def _journal(out: Path, merchant: str) -> list[dict[str, Any]]:
    lines = (out / "journals" / f"{merchant}.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_secagg_aggregate_is_the_mean_of_what_nodes_released(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = simulate(_tiny(rounds=3), out=out, node_policy=_policy(keep_sent_updates=True))
    run = RunFolder(out)
    assert [r["round"] for r in summary.rounds] == [0, 1, 2, 3]
    previous = run.load_checkpoint(0)
    for server_round in (1, 2, 3):
        sent = [_sent(out, m, server_round) for m in MERCHANTS]
        assert [w for w, _ in sent] == [1.0, 1.0, 1.0]  # uniform: no row count leaves a node
        aggregate = run.load_checkpoint(server_round)
        worst = max(
            float(np.max(np.abs(aggregate[k] - np.mean([s[k] for _, s in sent], axis=0))))
            for k in aggregate
        )
        assert worst < 1e-4, f"round {server_round}: SecAgg+ aggregate off by {worst:.2e}"
        moved = max(float(np.max(np.abs(aggregate[k] - previous[k]))) for k in aggregate)
        assert moved > 1e-3, f"round {server_round}: the global adapter did not move"
        previous = aggregate
        record = summary.rounds[server_round]
        assert record["trained"] == list(MERCHANTS) and record["declined"] == []
        assert record["bytes_up"] > 0 and record["skipped"] is None
    # The server learnt that each merchant trained, and nothing about its spend.
    privacy = json.loads(run.privacy_path.read_text("utf-8"))
    for merchant in MERCHANTS:
        rounds = privacy["merchants"][merchant]["rounds"]
        assert rounds == [{"round": r, "trained": True} for r in (1, 2, 3)]
        # Each merchant's own ledger holds the spend: per shopper, within budget.
        ledger = _ledger(out, merchant)
        assert ledger.rounds == [1, 2, 3] and ledger.unit == "user"
        assert 0 < ledger.spent_epsilon() <= 8.0
        assert summary.privacy[merchant]["spent"] == pytest.approx(ledger.spent_epsilon())
        trained = [r for r in _journal(out, merchant) if r["event"] == "trained"]
        assert [r["round"] for r in trained] == [1, 2, 3]
        assert trained[-1]["disclosed"] == {"merchant": merchant, "trained": True}
    report = json.loads((out / "privacy_report.json").read_text("utf-8"))
    assert all(report["merchants"][m]["consistent_with_ledger"] for m in MERCHANTS)


def test_every_merchant_declines_a_non_private_run_and_the_run_says_why(tmp_path: Path) -> None:
    out = tmp_path / "hostile"
    config = _tiny(rounds=2, dp=False)
    with pytest.raises(EcrecError) as info:
        simulate(config, out=out)
    message = str(info.value)
    assert "round 1 failed" in message and "train.dp" in message
    for merchant in MERCHANTS:
        assert merchant in message
        assert _ledger(out, merchant).rounds == []  # nothing spent, nothing trained
        declined = [r for r in _journal(out, merchant) if r["event"] == "declined"]
        assert declined and "train.dp" in declined[0]["settings"]
    assert [r["round"] for r in RunFolder(out).read_metrics()] == [0]


def test_nodes_lost_before_the_key_exchange_skip_the_round_not_the_run(tmp_path: Path) -> None:
    """m01 and m02 are unreachable when round 1 starts: SecAgg+ halts at its setup stage
    with one node, below its threshold of 2. The round is recorded as skipped with the
    reason (the run does not fail), nobody spent it, and round 2 trains all three."""
    from ecrec.federation.client import make_client_app
    from ecrec_simulations.dropout import GoneAtSetupMod

    gone = GoneAtSetupMod(partitions=frozenset({1, 2}), rounds=frozenset({1}))
    out = tmp_path / "run"
    summary = simulate(
        _affordable(_tiny(rounds=2)),
        out=out,
        node_policy=ROOMY,
        client_app=make_client_app(extra_mods=[gone]),
    )
    first, second = summary.rounds[1], summary.rounds[2]
    assert first["trained"] == [] and first["failures"] == 2, first
    assert "only 1 merchant(s) remained after the SecAgg+ setup stage" in first["skipped"]
    assert second["trained"] == list(MERCHANTS) and second["skipped"] is None, second
    run = RunFolder(out)
    before, after = run.load_checkpoint(0), run.load_checkpoint(1)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(_ledger(out, m).rounds == [2] for m in MERCHANTS)


def test_a_round_with_too_few_trainers_is_skipped_not_aggregated(tmp_path: Path) -> None:
    """m02's budget affords one round; in round 2 only two merchants train, fewer than
    min-trainers = 3, so the server refuses to unmask their sum and records the round
    as skipped; the global adapter stays as it was."""
    first = tmp_path / "probe"
    simulate(_affordable(_tiny(rounds=1)), out=first, node_policy=ROOMY)
    one_round = _ledger(first, "m02").spent_epsilon()
    out = tmp_path / "run"
    summary = simulate(
        _affordable(_tiny(rounds=2)),
        out=out,
        node_policy=ROOMY,
        merchant_budgets={"m02": one_round * 1.05},
    )
    records = summary.rounds
    assert records[1]["trained"] == list(MERCHANTS)
    assert records[2]["declined"] == ["m02"] and records[2]["trained"] == []
    assert "min-trainers" in records[2]["skipped"]
    run = RunFolder(out)
    before, after = run.load_checkpoint(1), run.load_checkpoint(2)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert "budget" in records[2]["decline_reasons"]["m02"]
    assert _ledger(out, "m02").rounds == [1]
    # m00 and m01 did train in round 2: their ledgers say so (spend is never under-counted).
    assert _ledger(out, "m00").rounds == [1, 2]


def test_resume_continues_numbering_and_keeps_round_one(tmp_path: Path) -> None:
    out = tmp_path / "run"
    simulate(_affordable(_tiny(rounds=1)), out=out, node_policy=ROOMY)
    run = RunFolder(out)
    round1 = hashlib.sha256(run.checkpoint_path(1).read_bytes()).hexdigest()
    metrics_round1 = run.read_metrics()[1]
    with pytest.raises(EcrecError, match="already holds a run"):
        simulate(_affordable(_tiny(rounds=3)), out=out, node_policy=ROOMY)
    simulate(_affordable(_tiny(rounds=3)), out=out, node_policy=ROOMY, resume=True)
    records = run.read_metrics()
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert records[1] == metrics_round1
    assert hashlib.sha256(run.checkpoint_path(1).read_bytes()).hexdigest() == round1
    assert all(r["trained"] == list(MERCHANTS) for r in records[2:])
    for merchant in MERCHANTS:
        assert _ledger(out, merchant).rounds == [1, 2, 3]


def test_resumed_fedadam_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """FedAdam's moments are checkpointed: 1 round + resume to 3 == 3 rounds straight.

    Seeded training (a test-only policy allows the server's seed) makes both repeatable.
    Plain aggregation, because SecAgg+ quantises with stochastic rounding (unseeded, on
    each node), which FedAdam's moments amplify from 1e-7 to 1e-3 in a round: equal runs
    are only defined without it."""
    config = _affordable(_tiny(rounds=3, seed=7)).replace(
        "federation", strategy="fedadam", server_learning_rate=0.05, secagg=False
    )
    policy = _policy(allow_server_seed=True, budget_epsilon=50.0, require_secagg=False)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    simulate(config, out=straight, node_policy=policy)
    simulate(config.replace("federation", rounds=1), out=stopped, node_policy=policy)
    simulate(config, out=stopped, node_policy=policy, resume=True)
    a, b = RunFolder(straight), RunFolder(stopped)
    assert b.load_strategy_arrays(1), "FedAdam state must be in the round-1 checkpoint"
    for server_round in (1, 2, 3):
        x, y = a.load_checkpoint(server_round), b.load_checkpoint(server_round)
        worst = max(float(np.max(np.abs(x[k] - y[k]))) for k in x)
        assert worst < 1e-6, f"round {server_round}: resumed FedAdam differs by {worst:.2e}"
    assert [r["ndcg@10"] for r in a.read_metrics()] == pytest.approx(
        [r["ndcg@10"] for r in b.read_metrics()], abs=1e-6
    )


def test_non_private_run_completes_where_nodes_allow_it_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "nodp"
    config = _tiny(rounds=1, dp=False).replace("report", html=True)
    summary = simulate(config, out=out, node_policy=_policy(allow_non_private=True))
    assert [r["round"] for r in summary.rounds] == [0, 1]
    report = json.loads((out / "privacy_report.json").read_text("utf-8"))
    assert report["private"] is False and "NOT PRIVATE" in report["notice"]
    assert "NOT PRIVATE" in (out / "report.html").read_text("utf-8")
    assert all(_ledger(out, m).rounds == [] for m in MERCHANTS)  # no DP, no ledger spend


@pytest.mark.parametrize(
    ("changes", "label"),
    [
        ({"strategy": "fedprox", "proximal_mu": 0.5}, "fedprox"),
        ({"client_dp": True, "client_clipping_norm": 0.5, "client_noise_multiplier": 0.1}, "cdp"),
    ],
)
def test_strategies_and_client_level_dp_run_under_secagg(
    tmp_path: Path, changes: dict[str, Any], label: str
) -> None:
    config = _tiny(rounds=1).replace("federation", **changes)
    out = tmp_path / label
    summary = simulate(config, out=out)
    assert [r["round"] for r in summary.rounds] == [0, 1]
    run = RunFolder(out)
    initial, after = run.load_checkpoint(0), run.load_checkpoint(1)
    assert all(np.all(np.isfinite(a)) for a in after.values())
    moved = max(float(np.max(np.abs(after[k] - initial[k]))) for k in after)
    assert moved > 1e-4, f"{label}: the global adapter did not change in round 1"
    assert summary.rounds[1]["trained"] == list(MERCHANTS)
