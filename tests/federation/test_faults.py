"""Fast checks of the fault handling the slow tests (test_kill, the dropout simulation) rely on:
a SIGKILLed launcher takes its children along, a node that never answers is on the round's
record, a resumed round every node has already spent is skipped, and the dropout scenario
drops exactly the replies it says it drops. No Flower process is started here."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, Metadata, RecordDict
from flwr.common.constant import ErrorCode
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from ecrec.deploy.processes import TAG_VARIABLE, die_with_parent_hook, tagged_processes
from ecrec.federation.protocol import Decline, RoundDeclined
from ecrec.federation.server import RoundGrid, RoundLog, _all_spent

_LAUNCHER = """
import sys, time
from ecrec.deploy.processes import Supervisor
s = Supervisor("pdeathsig")
s.start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"], env=s.child_env())
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sigkilled_launcher_takes_its_children_along(tmp_path: Path) -> None:
    """SIGKILL runs no handler and no atexit hook: only the kernel can stop the child, which
    runs in its own session (as flower-superlink and flower-supernode do)."""
    assert die_with_parent_hook() is not None
    tag = f"pdeathsig-{secrets.token_hex(3)}"
    launcher = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, TAG_VARIABLE: tag},
    )
    try:
        assert launcher.stdout is not None
        assert launcher.stdout.readline().strip() == "ready"
        (child,) = [p for p in tagged_processes(tag) if p.pid != launcher.pid]
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=30)
        deadline = time.monotonic() + 10
        while tagged_processes(tag) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not tagged_processes(tag), f"child {child.pid} outlived its SIGKILLed launcher"
    finally:
        for info in tagged_processes(tag):
            os.kill(info.pid, signal.SIGKILL)


def _message(node: int, *, content: RecordDict | None = None) -> Message:
    metadata = Metadata(
        run_id=1,
        message_id="",
        src_node_id=0,
        dst_node_id=node,
        reply_to_message_id="",
        group_id="2",
        created_at=time.time(),
        ttl=600,
        message_type="train",
    )
    return Message(metadata=metadata, content=content or RecordDict())


class _Grid:
    """Like Flower's grids: gives each message an id, then answers for the nodes it is
    told about -- an update, a decline, the SuperLink's "node unavailable" (sent as node
    1, the SuperLink), or nothing at all."""

    def __init__(self, replies: dict[int, str]) -> None:
        self.replies = replies
        self.timeouts: list[float | None] = []

    def send_and_receive(self, messages, *, timeout=None):  # type: ignore[no-untyped-def]
        self.timeouts.append(timeout)
        out = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = secrets.token_hex(8)
            kind = self.replies.get(msg.metadata.dst_node_id)
            if kind == "update":
                arrays = RecordDict({"arrays": ArrayRecord([np.ones(3, np.float32)])})
                out.append(Message(arrays, reply_to=msg))
            elif kind == "decline":
                error = RoundDeclined(merchant="m01", server_round=2, reason="round: spent")
                reason = f"<class 'RoundDeclined'>:<'{error}'>"
                code = ErrorCode.CLIENT_APP_RAISED_EXCEPTION
                out.append(Message(Error(code, reason), reply_to=msg))
            elif kind == "offline":
                reply = Message(Error(ErrorCode.NODE_UNAVAILABLE, "Node Unavailable"), reply_to=msg)
                reply.metadata.__dict__["_src_node_id"] = 1  # what the SuperLink sends
                out.append(reply)
        return out


def test_a_node_that_never_answers_is_on_the_round_record() -> None:
    grid = _Grid({1: "update", 2: "decline", 4: "offline"})  # node 3 died unnoticed
    round_grid = RoundGrid(grid, timeout=7)  # type: ignore[arg-type]
    round_grid.current = log = RoundLog(2)
    replies = list(round_grid.send_and_receive([_message(n) for n in (1, 2, 3, 4)]))
    assert len(replies) == 3 and grid.timeouts == [7]
    assert log.contributors == {1}
    assert log.declines == [Decline("m01", 2, "round: spent")]
    assert log.errors == ["node 3: no answer within 7 s", "node 4: Node Unavailable"]
    record = log.record()
    assert record["failures"] == 2 and record["declined"] == ["m01"]
    assert record["failure_reasons"] == log.errors
    round_grid.send_and_receive([_message(3)], timeout=1.5)  # a stage's own timeout wins
    assert log.errors[-1] == "node 3: no answer within 1.5 s"


def test_a_resumed_round_every_node_already_spent_is_skippable() -> None:
    spent = "round: round 2 is already spent in the ledger (a resumed run asks for it again)"
    log = RoundLog(2, declines=[Decline("m00", 2, spent), Decline("m01", 2, spent)])
    assert _all_spent(log)
    log.errors.append("node 9: no answer within 90 s")  # a dead node does not change that
    assert _all_spent(log)
    log.declines.append(Decline("m02", 2, "privacy budget: exhausted"))
    assert not _all_spent(log)  # a real refusal: the round fails loudly, as before
    assert not _all_spent(RoundLog(2))  # nobody answered: a failure, never a skip


def test_extra_mods_run_outside_the_ecrec_mods() -> None:
    from ecrec.federation.client import make_client_app
    from ecrec.federation.mods import privacy_guard_mod
    from ecrec_client.client_app import app

    def mark(msg, ctxt, call_next):  # type: ignore[no-untyped-def]
        return call_next(msg, ctxt)

    mods = make_client_app(extra_mods=[mark])._mods  # type: ignore[attr-defined]
    assert mods[0] is mark and mods[1] is privacy_guard_mod
    assert app._mods[0] is privacy_guard_mod  # type: ignore[attr-defined]  # installed: none


def _stage(stage: str | None) -> Message:
    content = RecordDict()
    if stage is not None:
        content[RECORD_KEY_CONFIGS] = ConfigRecord({Key.STAGE: stage})
    return _message(5, content=content)


def test_the_dropout_scenario_drops_the_update_reply_it_announces() -> None:
    from ecrec_simulations.dropout import DROPPED, DropoutMod, dropped_nodes, drops

    draws = [drops(p, r, probability=0.1, seed=0) for p in range(100) for r in range(1, 101)]
    assert 0.08 < sum(draws) / len(draws) < 0.12
    assert dropped_nodes(20, 3, probability=0.1, seed=0) == dropped_nodes(
        20, 3, probability=0.1, seed=0
    )
    assert dropped_nodes(20, 3, probability=0.1, seed=0) != dropped_nodes(
        20, 3, probability=0.1, seed=1
    )
    ctxt = Context(run_id=1, node_id=5, node_config={"partition-id": 4}, state=RecordDict(),
                   run_config={})  # fmt: skip
    calls: list[Message] = []

    def answer(msg: Message, _ctxt: Context) -> Message:  # as secaggplus_mod, which pops
        calls.append(msg)  # the stage off the request before the node answers
        configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
        if configs is not None:
            configs.pop(Key.STAGE)
        return Message(RecordDict(), reply_to=msg)

    always, never = DropoutMod(1.0), DropoutMod(0.0)
    for stage in (Stage.COLLECT_MASKED_VECTORS, None):  # SecAgg+'s update, or a plain fit
        lost = always(_stage(stage), ctxt, answer)
        assert lost.has_error() and lost.error.code == ErrorCode.REPLY_MESSAGE_UNAVAILABLE
        assert lost.error.reason.startswith(f"{DROPPED}: node 4 lost its round-2 reply")
        assert not never(_stage(stage), ctxt, answer).has_error()
    for stage in (Stage.SETUP, Stage.SHARE_KEYS, Stage.UNMASK):  # key exchange goes through
        assert not always(_stage(stage), ctxt, answer).has_error()
    assert len(calls) == 7  # the node always ran: a dropped reply was trained and spent
    with pytest.raises(ValueError, match="probability"):
        DropoutMod(1.5)


def _halting_workflow(halts: list[str]) -> Any:
    from ecrec.federation.server import GuardedSecAggPlusWorkflow

    return GuardedSecAggPlusWorkflow(
        min_trainers=3, on_refuse=halts.append, on_halt=halts.append,
        num_shares=1.0, reconstruction_threshold=0.67,
    )  # fmt: skip


def test_secagg_halting_before_training_says_how_many_nodes_were_left() -> None:
    halts: list[str] = []
    workflow = _halting_workflow(halts)
    state = SimpleNamespace(active_node_ids={7}, threshold=2)
    assert workflow._went_on(True, "setup", state) is True and halts == []
    assert workflow._went_on(False, "share-keys", SimpleNamespace(active_node_ids=set())) is False
    assert halts == []  # nobody left: nothing to skip, the round fails with the reasons
    assert workflow._went_on(False, "setup", state) is False
    assert halts == [
        "only 1 merchant(s) remained after the SecAgg+ setup stage, fewer than its "
        "reconstruction threshold of 2 and federation.min-trainers=3: round not aggregated"
    ]


def test_a_halt_after_deaths_skips_the_round_but_a_halt_after_declines_does_not() -> None:
    died = RoundLog(3)
    died.errors.append("node 9: Error: Node Unavailable")
    died.halted("only 1 merchant(s) remained")
    assert died.skipped == "only 1 merchant(s) remained"
    declined = RoundLog(3)
    declined.declines.append(Decline(merchant="m01", server_round=3, reason="train.dp: no"))
    declined.halted("only 1 merchant(s) remained")
    assert declined.skipped is None  # every round would be declined: the run must fail


def test_a_sum_that_cannot_be_unmasked_is_a_halt_naming_who_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three masked updates arrived, then a merchant died before the unmask stage: only two
    share-holders answer, below the threshold of 3 (what test_kill's round 3 hits when a
    node is killed just after its reply left)."""
    from flwr.server.workflow import SecAggPlusWorkflow

    def two_answer(self: Any, grid: Any, context: Any, state: Any) -> bool:
        state.active_node_ids = {1, 2}
        return False

    monkeypatch.setattr(SecAggPlusWorkflow, "unmask_stage", two_answer)
    halts: list[str] = []
    state = SimpleNamespace(active_node_ids={1, 2, 3}, threshold=3)
    assert _halting_workflow(halts).unmask_stage(None, None, state) is False
    assert halts == [
        "only 2 merchant(s) answered the SecAgg+ unmask stage, fewer than its reconstruction "
        "threshold of 3 (a merchant left after sending its masked update): the sum cannot be "
        "unmasked, round not aggregated"
    ]
