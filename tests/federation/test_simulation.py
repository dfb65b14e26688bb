"""Federation acceptance tests on Flower's simulation engine (tiny ranker).

Each simulation starts Ray and takes ~30-60 s on 2 cores, so they are marked
slow; CI runs them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from ecrec.config import load_config
from ecrec.node import MerchantNode, RoundOutcome
from ecrec.privacy.ledger import PrivacyLedger
from ecrec.runfolder import RunFolder
from ecrec_simulations.runner import simulate

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Ray workers cannot import this test module; ship its classes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class RecordingNode(MerchantNode):
    """A node that also saves exactly what it sends, for checking the aggregate."""

    def run_round(self, *, server_round: int, global_state: Any, **kwargs: Any) -> RoundOutcome:
        outcome = super().run_round(server_round=server_round, global_state=global_state, **kwargs)
        dump = Path(self.ledger.path).parent.parent / "sent"
        dump.mkdir(exist_ok=True)
        weight = 0 if outcome.state is None else len(self.frame)
        state = outcome.state if outcome.state is not None else dict(global_state)
        np.savez(
            dump / f"round{server_round}_{self.merchant_id}.npz",
            __weight__=np.array(weight),
            **{k: np.asarray(v, np.float32) for k, v in state.items()},
        )
        return outcome


def _tiny(rounds: int = 3):
    return load_config(ROOT / "configs" / "tiny.toml").replace("federation", rounds=rounds)


def _sent(run_dir: Path, server_round: int) -> list[tuple[int, dict[str, np.ndarray]]]:
    out = []
    for file in sorted((run_dir / "sent").glob(f"round{server_round}_*.npz")):
        with np.load(file) as data:
            weight = int(data["__weight__"])
            out.append((weight, {k: data[k] for k in data.files if k != "__weight__"}))
    return out


def test_secagg_aggregate_is_the_weighted_mean_and_moves_every_round(tmp_path: Path) -> None:
    config = _tiny(rounds=3)
    assert config.federation.secagg, "tiny config must exercise SecAgg+"
    out = tmp_path / "run"
    simulate(config, out=out, node_class=RecordingNode)
    run = RunFolder(out)
    previous: dict[str, np.ndarray] | None = None
    for server_round in (1, 2, 3):
        sent = _sent(out, server_round)
        assert len(sent) == 2, f"round {server_round}: expected both merchants' updates"
        total = sum(w for w, _ in sent)
        aggregate = run.load_checkpoint(server_round)
        worst = 0.0
        for name, value in aggregate.items():
            expected = sum(w * s[name].astype(np.float64) for w, s in sent) / total
            worst = max(worst, float(np.max(np.abs(value - expected))))
        assert worst < 1e-4, f"round {server_round}: SecAgg+ aggregate off by {worst:.2e}"
        if previous is not None:
            moved = max(float(np.max(np.abs(aggregate[k] - previous[k]))) for k in aggregate)
            assert moved > 1e-3, f"round {server_round}: global adapter did not move"
        previous = aggregate
    # The update really differs from what each client received (training happened).
    records = run.read_metrics()
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert all(r["clients"] == 2 for r in records[1:])


def _affordable(config):
    """An explicit σ and a roomy budget, so that extra rounds really train."""
    return config.replace("privacy", noise_multiplier=1.5, budget_epsilon=50.0)


def test_resume_continues_numbering_and_keeps_round_one(tmp_path: Path) -> None:
    out = tmp_path / "run"
    simulate(_affordable(_tiny(rounds=1)), out=out)
    run = RunFolder(out)
    round1 = hashlib.sha256(run.checkpoint_path(1).read_bytes()).hexdigest()
    metrics_round1 = run.read_metrics()[1]
    with pytest.raises(Exception, match="already holds a run"):
        simulate(_affordable(_tiny(rounds=3)), out=out)
    simulate(_affordable(_tiny(rounds=3)), out=out, resume=True)
    records = run.read_metrics()
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert records[1] == metrics_round1
    assert hashlib.sha256(run.checkpoint_path(1).read_bytes()).hexdigest() == round1
    # Rounds 2 and 3 really trained (no declines) and moved the model.
    assert all(r["clients"] == 2 and r["declined"] == [] for r in records[2:])
    for previous, current in ((1, 2), (2, 3)):
        a, b = run.load_checkpoint(previous), run.load_checkpoint(current)
        assert max(float(np.max(np.abs(a[k] - b[k]))) for k in a) > 1e-4
    for merchant in ("m00", "m01"):
        ledger = PrivacyLedger.load(out / "ledgers" / f"{merchant}.json")
        assert ledger.rounds == [1, 2, 3]


def _budget_between_rounds_one_and_two(config, merchant: str) -> float:
    """A budget that affords round 1 but not round 2, from the node's own planning."""
    from ecrec.data.synth import SynthConfig, synthesize
    from ecrec.privacy.accounting import (
        RoundSpend,
        epsilon_for_history,
        noise_multiplier_for_target,
    )
    from ecrec.train.local import plan_round

    data = config.data
    market = synthesize(
        SynthConfig(
            merchants=data.merchants,
            queries_per_merchant=data.queries_per_merchant,
            candidates_per_query=data.candidates_per_query,
            validation_queries=data.validation_queries,
            seed=data.seed,
        )
    )
    q, steps = plan_round(len(market.merchants[merchant]), config.train)
    sigma = noise_multiplier_for_target(
        target_epsilon=config.privacy.budget_epsilon,
        delta=config.privacy.delta,
        sample_rate=q,
        steps=steps * config.federation.rounds,
    )
    one, two = (
        epsilon_for_history([RoundSpend(sigma, q, steps)] * n, delta=config.privacy.delta)
        for n in (1, 2)
    )
    return (one + two) / 2


def test_tiny_budget_merchant_declines_and_run_finishes(tmp_path: Path) -> None:
    config = _tiny(rounds=3)
    out = tmp_path / "run"
    budget = _budget_between_rounds_one_and_two(config, "m01")
    summary = simulate(config, out=out, merchant_budgets={"m01": budget})
    assert [r["round"] for r in summary.rounds] == [0, 1, 2, 3]
    privacy = json.loads((out / "privacy.json").read_text())
    m01 = privacy["merchants"]["m01"]
    assert m01["declined_rounds"] == [2, 3]
    assert m01["epsilon_spent"] <= budget
    assert privacy["merchants"]["m00"]["declined_rounds"] == []
    assert summary.rounds[2]["declined"] == ["m01"]
    # privacy.json agrees with the merchant's own ledger ...
    ledger = PrivacyLedger.open(
        out / "ledgers" / "m01.json",
        budget_epsilon=budget,
        delta=config.privacy.delta,
        accountant=config.privacy.accountant,
        merchant_id="m01",
    )
    assert m01["epsilon_spent"] == pytest.approx(ledger.spent_epsilon(), rel=1e-12)
    assert [d["round"] for d in ledger.declined] == [2, 3]
    # ... and the reports written at the end agree with privacy.json.
    report = json.loads((out / "privacy_report.json").read_text())
    for merchant, info in privacy["merchants"].items():
        assert report["merchants"][merchant]["consistent_with_ledger"]
        assert report["merchants"][merchant]["epsilon_spent"] == pytest.approx(
            info["epsilon_spent"], rel=1e-9
        )
    assert (out / "report.html").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("changes", "label"),
    [
        ({"strategy": "fedprox", "proximal_mu": 0.5}, "fedprox"),
        ({"strategy": "fedadam", "server_learning_rate": 0.01}, "fedadam"),
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
    assert initial.keys() == after.keys()
    assert all(np.all(np.isfinite(a)) for a in after.values())
    moved = max(float(np.max(np.abs(after[k] - initial[k]))) for k in after)
    assert moved > 1e-4, f"{label}: the global adapter did not change in round 1"
    assert summary.rounds[1]["clients"] == 2
