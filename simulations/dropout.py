"""Scenario: simulated merchants whose round reply is lost, at random (seeded), every round.

The apps are the production ServerApp and ClientApp; the only addition is a mod that
runs *outside* the ecrec mods (:func:`ecrec.federation.client.make_client_app`'s
``extra_mods``), so it models what happens *to* a node, never what its policy allows:
the node trains the round as usual -- its ledger records the spend, its journal the
training -- and then the reply carrying its update never reaches the server (a network
failure, or the merchant's machine dying after the ledger write). The server sees
"reply unavailable" in place of the masked update (or the plain fit reply), exactly
as SecAgg+ sees a node that dropped out after sharing its keys, and must finish the
round with the others.

Which node drops which round is a pure function of ``(seed, partition id, round)``
(:func:`drops`), so a test can say in advance who will be missing from every round.

    from ecrec_simulations.dropout import simulate_with_dropout
    summary, dropped = simulate_with_dropout(config, out=Path("runs/d"), probability=0.1)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flwr.app import Context, Message
    from flwr.client import ClientApp
    from flwr.clientapp.typing import ClientAppCallable

    from ecrec.config import RunConfig
    from ecrec.federation.simulation import SimulationSummary

#: Starts the error reason of every reply this scenario drops.
DROPPED = "ecrec-simulated-dropout"


def drops(partition: int, server_round: int, *, probability: float, seed: int) -> bool:
    """True if node ``partition`` loses its reply in ``server_round`` (independent draws)."""
    digest = hashlib.sha256(f"{seed}:{partition}:{server_round}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < probability


def dropped_nodes(
    num_nodes: int, rounds: int, *, probability: float, seed: int
) -> dict[int, list[int]]:
    """Round -> the partition ids whose reply is dropped in it (rounds 1..``rounds``)."""
    return {
        r: [p for p in range(num_nodes) if drops(p, r, probability=probability, seed=seed)]
        for r in range(1, rounds + 1)
    }


def _carries_update(msg: Message) -> bool:
    """The training message whose reply holds the node's update: SecAgg+'s masked-vector
    stage, or a plain (unmasked) fit request."""
    from flwr.app.message_type import MessageType
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

    if msg.metadata.message_type != MessageType.TRAIN:
        return False
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    return configs is None or configs.get(Key.STAGE) == Stage.COLLECT_MASKED_VECTORS


@dataclass(frozen=True)
class DropoutMod:
    """A ClientApp mod: after the node answered, lose the reply with ``probability``.

    A class, not a closure, so Ray can ship it to its workers by reference.
    """

    probability: float
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {self.probability}")

    def __call__(self, msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        from flwr.app import Error, Message
        from flwr.common.constant import ErrorCode

        from ecrec.node.settings import PARTITION_ID

        partition = int(ctxt.node_config.get(PARTITION_ID, -1))  # type: ignore[arg-type]
        server_round = int(msg.metadata.group_id or 0)
        lose = _carries_update(msg) and drops(  # before call_next: secaggplus_mod pops the stage
            partition, server_round, probability=self.probability, seed=self.seed
        )
        reply = call_next(msg, ctxt)
        if not lose or reply.has_error():
            return reply
        reason = f"{DROPPED}: node {partition} lost its round-{server_round} reply"
        return Message(Error(ErrorCode.REPLY_MESSAGE_UNAVAILABLE, reason), reply_to=msg)


@dataclass(frozen=True)
class GoneAtSetupMod:
    """A ClientApp mod: nodes ``partitions`` are unreachable when round ``rounds`` starts.

    Their SecAgg+ setup-stage reply is lost before the node sees the message, so they
    share no keys, train nothing and spend nothing; the server is left with fewer nodes
    than the reconstruction threshold before anyone trains.
    """

    partitions: frozenset[int]
    rounds: frozenset[int]

    def __call__(self, msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        from flwr.app import Error, Message
        from flwr.app.message_type import MessageType
        from flwr.common.constant import ErrorCode
        from flwr.common.secure_aggregation.secaggplus_constants import (
            RECORD_KEY_CONFIGS,
            Key,
            Stage,
        )

        from ecrec.node.settings import PARTITION_ID

        partition = int(ctxt.node_config.get(PARTITION_ID, -1))  # type: ignore[arg-type]
        server_round = int(msg.metadata.group_id or 0)
        configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
        setup = configs is not None and configs.get(Key.STAGE) == Stage.SETUP
        if not (
            msg.metadata.message_type == MessageType.TRAIN
            and setup
            and partition in self.partitions
            and server_round in self.rounds
        ):
            return call_next(msg, ctxt)
        reason = f"{DROPPED}: node {partition} unreachable at round {server_round}'s setup"
        return Message(Error(ErrorCode.REPLY_MESSAGE_UNAVAILABLE, reason), reply_to=msg)


def dropout_app(probability: float, *, seed: int = 0) -> ClientApp:
    """The ecrec ClientApp with :class:`DropoutMod` outside its own mods."""
    from ecrec.federation.client import make_client_app

    return make_client_app(extra_mods=[DropoutMod(probability, seed)])


def simulate_with_dropout(
    config: RunConfig, *, out: Path, probability: float, seed: int = 0, **kwargs: Any
) -> tuple[SimulationSummary, dict[int, list[int]]]:
    """``ecrec simulate`` with the dropout scenario; returns the summary and, per round,
    the partition ids whose reply was dropped (partition p is the p-th merchant by id)."""
    from ecrec.federation.simulation import simulate
    from ecrec.simulation import NODES_FILE, simulated_nodes

    summary = simulate(config, out=out, client_app=dropout_app(probability, seed=seed), **kwargs)
    nodes = len(simulated_nodes(Path(out) / NODES_FILE))
    dropped = dropped_nodes(nodes, config.federation.rounds, probability=probability, seed=seed)
    return summary, dropped


__all__ = [
    "DROPPED",
    "DropoutMod",
    "GoneAtSetupMod",
    "dropout_app",
    "dropped_nodes",
    "drops",
    "simulate_with_dropout",
]
