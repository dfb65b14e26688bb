"""Load: 20 simulated merchants, each losing its round reply with probability 0.1 (seeded).

The apps are the production ServerApp and ClientApp on Flower's simulation engine; the
dropout scenario (``ecrec_simulations.dropout``) loses a node's reply *after* it trained,
the hardest case for SecAgg+ (the dead node's pairwise masks are in everyone else's
vectors and must be removed from its key shares). Every round must still aggregate,
exactly the survivors' mean, with the lost replies on the record and in the ledgers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecrec.config import load_config
from ecrec.node.policy import NodePolicy
from ecrec.privacy.ledger import PrivacyLedger
from ecrec.runfolder import RunFolder
from ecrec.simulation import simulated_nodes

ROOT = Path(__file__).resolve().parents[2]
MERCHANTS = 20
ROUNDS = 2
#: Seed 0 drops node 7 in round 1 and node 8 in round 2 (``dropped_nodes``, checked below).
SEED = 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_twenty_merchants_with_ten_percent_dropout_complete_every_round(tmp_path: Path) -> None:
    from ecrec_simulations.dropout import DROPPED, simulate_with_dropout

    config = load_config(ROOT / "configs" / "tiny.toml")
    config = config.replace("data", merchants=MERCHANTS, queries_per_merchant=6)
    config = config.replace(
        "federation",
        rounds=ROUNDS,
        min_clients=MERCHANTS,
        reconstruction_threshold=0.67,  # 13 of 20 shares: SecAgg+ survives 7 dropouts
        clipping_range=16.0,  # room for the hybrid head's weights (configs/default.toml)
    )
    config = config.replace("report", audit=False, explain=False, html=False)
    out = tmp_path / "run"
    summary, dropped = simulate_with_dropout(
        config,
        out=out,
        probability=0.1,
        seed=SEED,
        node_policy=NodePolicy(keep_sent_updates=True),
    )
    assert dropped == {1: [7], 2: [8]}, dropped  # the seeded draw this test was written for
    nodes = simulated_nodes(out / "nodes.toml")
    ids = [node.ledger_path.stem for node in nodes]  # partition p -> merchant
    run = RunFolder(out)
    assert [r["round"] for r in summary.rounds] == list(range(ROUNDS + 1))
    previous = run.load_checkpoint(0)
    for server_round in range(1, ROUNDS + 1):
        record = summary.rounds[server_round]
        lost = {ids[p] for p in dropped[server_round]}
        survivors = sorted(set(ids) - lost)
        assert record["skipped"] is None, record
        assert record["trained"] == survivors and record["declined"] == []
        assert record["failures"] == len(lost)
        for partition in dropped[server_round]:  # the record says which reply was lost
            assert any(
                f"{DROPPED}: node {partition} lost its round-{server_round} reply" in reason
                for reason in record["failure_reasons"]
            ), record["failure_reasons"]
        # The aggregate is the mean of what the survivors released: the lost updates'
        # masks cancelled out, and nothing of a lost update got in.
        aggregate = run.load_checkpoint(server_round)
        sent = []
        for merchant in survivors:
            path = out / "journals" / f"{merchant}.sent" / f"round_{server_round:04d}.npz"
            with np.load(path) as data:
                sent.append({k: data[k] for k in data.files if k != "__weight__"})
        worst = max(
            float(np.max(np.abs(aggregate[k] - np.mean([s[k] for s in sent], axis=0))))
            for k in aggregate
        )
        assert worst < 1e-4, f"round {server_round}: aggregate off the survivors' mean by {worst}"
        moved = max(float(np.max(np.abs(aggregate[k] - previous[k]))) for k in aggregate)
        assert moved > 1e-4, f"round {server_round}: the global adapter did not move"
        previous = aggregate
    # A node whose reply was lost did train and spend that round: its own ledger says so,
    # and it trained the other rounds as usual; nobody spent any round twice.
    for node in nodes:
        ledger = PrivacyLedger.load(
            node.ledger_path, key_file=node.key_file, anchor_path=node.anchor_path
        )
        assert ledger.rounds == list(range(1, ROUNDS + 1)), (node.ledger_path.stem, ledger.rounds)
