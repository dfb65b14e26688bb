"""One round's bookkeeping on the server: who trained, who declined and why, bytes, and
the Grid wrapper that bounds every exchange by a timeout and records nodes that never
answered (Flower's default fit workflow waits for ever and drops error replies)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.common.secure_aggregation.secaggplus_constants import Key as SecAggKey
from flwr.server import Grid

from ecrec.errors import EcrecError
from ecrec.federation.protocol import (
    Decline,
    parse_decline,
)

log = logging.getLogger("ecrec.server")
#: At most this many failures are spelled out in a round's record (all are counted).
MAX_RECORDED_FAILURES = 50


class RoundFailedError(EcrecError):
    """A round ended without an aggregated update and the run cannot go on."""

    exit_code = 1


# --------------------------------------------------------------------------- what a round saw


@dataclass
class RoundLog:
    """What the server learnt about one round from the nodes' answers."""

    server_round: int
    trained: dict[str, dict[str, Any]] = field(default_factory=dict)  # merchant -> disclosed
    declines: list[Decline] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # failures that were not declines
    rejected: dict[str, str] = field(default_factory=dict)  # plain mode: dropped updates
    contributors: set[int] = field(default_factory=set)  # nodes whose update arrived
    bytes_up: int = 0
    bytes_down: int = 0
    skipped: str | None = None  # why the round was not aggregated, if it was refused
    aggregated: bool = False
    started: float = field(default_factory=time.perf_counter)

    def declined_by(self) -> dict[str, str]:
        return {d.merchant: d.reason for d in self.declines}

    def record(self) -> dict[str, Any]:
        """The round's federation fields in ``metrics.jsonl``."""
        return {
            "clients": len(self.trained) + len(self.declines),
            "trained": sorted(self.trained),
            "declined": sorted(self.declined_by()),
            "decline_reasons": self.declined_by(),
            "failures": len(self.errors),
            "rejected": dict(self.rejected),
            "failure_reasons": [e[:300] for e in self.errors[:MAX_RECORDED_FAILURES]],
            "skipped": self.skipped,
            "epsilon": {
                m: d.get("epsilon-spent") for m, d in self.trained.items() if "epsilon-spent" in d
            },
            "epsilon_accountant": next(
                (d["accountant"] for d in self.trained.values() if "accountant" in d), None
            ),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "wall_seconds": round(time.perf_counter() - self.started, 3),
        }

    def halted(self, reason: str) -> None:
        """SecAgg+ stopped before anyone trained, with too few nodes left. Nodes that died
        or were unreachable make it a skipped round (the run goes on); nodes that only
        declined would decline every round, so the round stays unskipped and the run fails
        with their reasons."""
        if self.errors:
            self.skipped = reason

    def why_nothing(self) -> str:
        parts = [f"{d.merchant}: {d.reason}" for d in self.declines]
        parts += self.errors[:3]
        if self.skipped:
            parts.insert(0, self.skipped)
        return "; ".join(parts) or "no node answered"


#: The setting a node names when it declines a round number its ledger has already
#: spent (``MerchantNode.run_round``): the update of that round was lost, not refused.
ALREADY_SPENT_SETTING = "round"


def _all_spent(round_log: RoundLog) -> bool:
    """True if nodes declined the round and every decline says "already spent".

    Such a round can never be completed (no node trains a round number twice), so
    the run skips it instead of failing every ``--resume`` on it.
    """
    return bool(round_log.declines) and all(
        d.reason.split(":", 1)[0].strip() == ALREADY_SPENT_SETTING for d in round_log.declines
    )


def _is_contribution(msg: Message) -> bool:
    """A node's trained update: a masked vector (SecAgg+) or a plain fit reply's arrays."""
    if msg.has_error():
        return False
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    if configs is not None:
        return SecAggKey.MASKED_PARAMETERS in configs
    return any(len(record) for record in msg.content.array_records.values())


def _message_bytes(msg: Message) -> int:
    """Bytes of arrays and byte strings in a message (what dominates the wire size)."""
    total = 0
    if msg.has_error():
        return 0
    for record in msg.content.array_records.values():
        total += sum(int(np.asarray(a.numpy()).nbytes) for a in record.values())
    for record in msg.content.config_records.values():
        for value in record.values():
            if isinstance(value, bytes):
                total += len(value)
            elif isinstance(value, list):
                total += sum(len(v) for v in value if isinstance(v, bytes))
    return total


class RoundGrid:
    """A Grid that bounds every exchange by a timeout and records what came back."""

    def __init__(self, grid: Grid, *, timeout: float) -> None:
        self._grid = grid
        self.timeout = timeout
        self.current: RoundLog | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        messages = list(messages)
        wait = self.timeout if timeout is None else timeout
        replies = list(self._grid.send_and_receive(messages, timeout=wait))
        if self.current is not None:
            # The grid gave each message its id when it pushed it. A reply names the
            # message it answers; the SuperLink itself answers (as node 1) for a node
            # it found offline, so the node a reply is about is the message's target.
            target = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}

            def about(reply: Message) -> int:
                return target.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)

            # A node that died (or hung) sends nothing; say so, or the round's record
            # would show no failure for a node that was asked and never answered.
            answered = {about(reply) for reply in replies}
            for node_id in sorted({m.metadata.dst_node_id for m in messages} - answered):
                self.current.errors.append(f"node {node_id}: no answer within {wait:g} s")
            self.current.bytes_down += sum(_message_bytes(m) for m in messages)
            for reply in replies:
                self.current.bytes_up += _message_bytes(reply)
                if _is_contribution(reply):
                    self.current.contributors.add(reply.metadata.src_node_id)
                if reply.has_error():
                    reason = str(reply.error.reason)
                    decline = parse_decline(reason)
                    if decline is not None:
                        self.current.declines.append(decline)
                    else:
                        self.current.errors.append(f"node {about(reply)}: {reason[:300]}")
        return replies
