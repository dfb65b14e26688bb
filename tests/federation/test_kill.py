"""Faults in deployment: merchant nodes and the server SIGKILLed in the middle of a round.

Four merchants (m00..m03) run ``ecrec-client`` against ``ecrec-server`` on 127.0.0.1 (TLS,
node authentication, SecAgg+ with every node holding shares and a threshold of 3 of 4,
``federation.min-trainers = 3``, ``federation.min-clients = 4``, ``federation.timeout =``
:data:`TIMEOUT` s). What the product promises, and what each test shows:

* a round whose dead nodes leave at least ``min-trainers`` survivors completes with them;
  one that leaves fewer is recorded as skipped with the reason (never aggregated, never a
  hang), and the run goes on; every exchange is bounded by ``federation.timeout``;
* a killed node's ledger opens (sealed, anchored) with the round either spent or not
  trained at all -- the spend is written before the update leaves -- and the restarted
  ``ecrec-client`` (same ledger) trains the next round;
* ``ecrec-server --resume`` after a SIGKILL of ``ecrec-server`` continues from the last
  completed round, byte-identical records for the rounds already done. The rule for the
  round that was lost: a node never trains a round number twice (its ledger refuses), so
  a node that spent it in the lost attempt declines it ("already spent", on the round's
  record) and one that did not trains it; the round aggregates under the usual
  min-trainers rule, and a round that every answering node declines as already spent is
  recorded as skipped, not failed. The lost attempt's spend stays charged once, in the
  node's ledger and journal; every spend is a training in the node's journal.

The second test continues the first one's run (to 5 rounds), so the module pays for one
set-up. Every process carries a tag (see ``test_deploy``), so the tests prove that a
SIGKILLed launcher takes its whole tree along and that nothing is left at the end.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ecrec.deploy.processes import free_port, tagged_processes
from tests.federation.test_deploy import (
    BIN,
    MODULE_TAG,
    Proc,
    Procs,
    assert_no_orphans,
    ecrec,
    wait_for_text,
    write_server_toml,
)

MERCHANTS = ("m00", "m01", "m02", "m03")
#: federation.timeout: what bounds every SecAgg+ stage. An honest stage takes 20-40 s here
#: (a fresh ClientApp process per message, four nodes on two shared cores).
TIMEOUT = 90
#: After a stage's timeout the server still runs the next stage, evaluates and writes the
#: round (tens of seconds on the loaded machine): the most a round record may lag.
RECORD_SLACK = 150
KILL_CONFIG = f"""
[data]
merchants = 4

[model]
base-model = "tiny"
max-length = 32

[train]
local-steps = 4
batch-size = 16
learning-rate = 3e-3

[privacy]
budget-epsilon = 50.0
noise-multiplier = 1.5

[federation]
rounds = 3
num-shares = 1.0
reconstruction-threshold = 0.67
min-clients = 4
min-trainers = 3
clipping-range = 16.0
timeout = {TIMEOUT}

[report]
explain = false
"""


@dataclass
class Cluster:
    """The certificates, data and node states of one module; clients by merchant."""

    root: Path
    port: int
    procs: Procs
    clients: dict[str, Proc] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.log.append(text)
        print(f"[kill] {text}")

    def folder(self, merchant: str, state: str) -> Path:
        return self.root / state / merchant

    def start_client(self, merchant: str, *, state: str, init: bool, name: str = "") -> Proc:
        folder = self.folder(merchant, state)
        number = MERCHANTS.index(merchant) + 1
        argv = [
            str(BIN / "ecrec-client"),
            "--server",
            f"127.0.0.1:{self.port}",
            "--data",
            str(self.root / "data" / f"merchant_{merchant}.parquet"),
            "--ledger",
            str(folder / "ledger.json"),
            "--ledger-key-file",
            str(folder / "secrets" / "node.key"),
            "--journal",
            str(folder / "journal.jsonl"),
            "--log-file",
            str(folder / "supernode.log"),
            "--connect-timeout",
            "60",
            "--budget-epsilon",
            "50",
            "--key",
            str(self.root / "certs" / f"node-{number}.key"),
            "--ca",
            str(self.root / "certs" / "ca.crt"),
            *(["--init-ledger"] if init else []),
        ]
        proc = self.procs.start(name or f"{state}-{merchant}", argv, cwd=self.root)
        self.clients[merchant] = proc
        return proc

    def start_server(
        self, name: str, run_dir: str, *, resume: bool = False, rounds: int = 0
    ) -> Proc:
        path = write_server_toml(
            self.root, self.port, f"{name}.toml", rounds=rounds, config="request.toml"
        )
        text = path.read_text().replace('"run"', f'"{run_dir}"')
        keys = ", ".join(f'"certs/node-{i}.pub"' for i in range(1, len(MERCHANTS) + 1))
        text = text.replace(
            'node-keys = ["certs/node-1.pub", "certs/node-2.pub", "certs/node-3.pub"]',
            f"node-keys = [{keys}]",
        )
        path.write_text(text)
        argv = [str(BIN / "ecrec-server"), "--config", str(path)]
        return self.procs.start(name, [*argv, "--resume"] if resume else argv, cwd=self.root)

    def ledger(self, merchant: str, state: str):
        from ecrec.privacy.ledger import PrivacyLedger

        folder = self.folder(merchant, state)
        return PrivacyLedger.load(folder / "ledger.json", key_file=folder / "secrets" / "node.key")

    def journal(self, merchant: str, state: str) -> list[dict]:
        from ecrec.node.journal import NodeJournal

        return NodeJournal(self.folder(merchant, state) / "journal.jsonl").records()


def records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def guard_pids(proc: Proc) -> set[int]:
    """The node's ClientApp processes (the guard stands in for flwr-clientapp)."""
    return {p.pid for p in tagged_processes(proc.tag) if "ecrec.federation.guard" in p.cmdline}


def _is_training(pid: int) -> bool:
    """Only the training message builds the ranker; its tokenizer is a native library,
    so it shows in the process's memory map as soon as local training is starting."""
    try:
        return "tokenizers" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def until(
    check: Callable[[], object],
    *,
    timeout: float,
    what: str,
    server: Proc | None = None,
    left: Callable[[], object] | None = None,
) -> object:
    """Poll ``check`` until it returns something true; fail (never hang) after ``timeout``
    (saying what ``left`` returns then: e.g. the processes that did not end)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if server is not None and server.popen.poll() is not None:
            pytest.fail(f"{what}: {server.name} exited {server.popen.returncode}:\n"
                        f"{server.text()[-3000:]}")  # fmt: skip
        if time.monotonic() > deadline:
            still = f"; still there: {left()}" if left is not None else ""
            pytest.fail(f"{what}: not within {timeout:.0f} s{still}")
        time.sleep(0.2)


def wait_training(
    procs: list[Proc], *, server: Proc, timeout: float = 400, stale: set[int] | None = None
) -> list[int]:
    """The pids of the nodes' ClientApp processes once every one of them is training.

    ``stale``: pids alive before this round began (a previous round's training process
    may take a while to exit on a loaded machine; killing the node then would hit the
    next round's key exchange, not its training)."""
    found: dict[str, int] = {}
    old = stale or set()

    def all_training() -> bool:
        for proc in procs:
            pid = next((p for p in guard_pids(proc) if p not in old and _is_training(p)), 0)
            if pid and proc.name not in found:
                found[proc.name] = pid
        return len(found) == len(procs)

    until(
        all_training,
        timeout=timeout,
        what="training on " + ", ".join(p.name for p in procs),
        server=server,
    )
    return [found[proc.name] for proc in procs]


def guards_now(cluster: Cluster) -> set[int]:
    """Every node's ClientApp pids at this moment."""
    return {pid for proc in cluster.clients.values() for pid in guard_pids(proc)}


def trained(cluster: Cluster, merchant: str, state: str, number: int) -> bool:
    journal = cluster.journal(merchant, state)
    return any(r["event"] == "trained" and r["round"] == number for r in journal)


def wait_next_stage(
    cluster: Cluster, survivors: list[str], state: str, number: int, *, server: Proc
) -> None:
    """Until the server sends a survivor its next message after training round ``number``:
    a ClientApp process that starts after that survivor's journal says it trained (the
    SecAgg+ unmask stage, which starts only once the server closed the training stage)."""
    seen: dict[str, set[int]] = {m: set() for m in survivors}

    def moved_on() -> bool:
        for merchant in survivors:
            pids = guard_pids(cluster.clients[merchant])
            if trained(cluster, merchant, state, number) and pids - seen[merchant]:
                return True
            seen[merchant] |= pids
        return False

    until(moved_on, timeout=TIMEOUT + 60, what=f"round {number}: next stage", server=server)


def kill_tree(proc: Proc) -> None:
    """The node's machine dies: SIGKILL every process of the node at once."""
    for _ in range(3):  # a process started while we killed the others
        for info in tagged_processes(proc.tag):
            os.kill(info.pid, signal.SIGKILL)
        time.sleep(0.2)
    proc.popen.wait(timeout=30)


def round_record(run: Path, number: int, *, server: Proc, timeout: float) -> dict:
    found = until(
        lambda: next((r for r in records(run) if r["round"] == number), None),
        timeout=timeout,
        what=f"round {number} recorded",
        server=server,
    )
    return dict(found)  # type: ignore[call-overload]


def check_killed_ledger(cluster: Cluster, merchant: str, state: str, number: int) -> str:
    """The killed node's ledger opens and holds round ``number`` wholly or not at all."""
    ledger = cluster.ledger(merchant, state)  # verifies seal and anchor; raises if torn
    spent = ledger.rounds
    trained = [r["round"] for r in cluster.journal(merchant, state) if r["event"] == "trained"]
    assert len(spent) == len(set(spent)), spent
    assert set(trained) <= set(spent), (trained, spent)  # the journal follows the ledger
    if number in spent:
        return f"round {number} spent (ledger written before the update left)"
    assert number not in trained
    return f"round {number} not trained (nothing spent)"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("kill")
    ecrec("certs", "--out", "certs", "--nodes", str(len(MERCHANTS)), cwd=root)
    ecrec("data", "synth", "--merchants", str(len(MERCHANTS)), "--out", "data", cwd=root)
    (root / "request.toml").write_text(KILL_CONFIG)
    procs = Procs(root)
    port = free_port()
    found = Cluster(root=root, port=port, procs=procs)
    try:
        yield found
    finally:
        procs.stop_all()
        print("\n".join(f"[kill] {line}" for line in found.log))
        assert_no_orphans(MODULE_TAG, port=port, no_flower_children=True)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_killed_nodes_never_hang_a_round_or_tear_a_ledger(cluster: Cluster) -> None:
    """Round 1: m03's whole node is SIGKILLed while it trains; the three survivors (=
    min-trainers) complete the round. m03 restarts on the same ledger. Round 2: m03
    trains again; m02's ClientApp process alone is SIGKILLed while training (its SuperNode
    lives on); the round completes with the other three. Round 3: m00's ecrec-client alone
    is SIGKILLed (its SuperNode, SuperExec and ClientApp must follow) and m01's node dies:
    two survivors, fewer than min-trainers, so the round is recorded as skipped. Every
    round is recorded within the timeout plus one stage, and no ledger is torn."""
    state, run = "nodes", cluster.root / "run"
    server = cluster.start_server("server-kill-nodes", "run")
    wait_for_text(server, "registered 4 node key(s)", timeout=300)
    for merchant in MERCHANTS:
        cluster.start_client(merchant, state=state, init=True)
    clients = cluster.clients

    # Round 1: a merchant's machine dies while its node trains.
    round_record(run, 0, server=server, timeout=600)
    victim = clients["m03"]
    wait_training([victim], server=server)
    time.sleep(1.0)  # into the training steps
    killed = time.monotonic()
    kill_tree(victim)
    cluster.note("round 1: SIGKILL every process of m03's node while its ClientApp trains")
    wait_next_stage(cluster, ["m00", "m01", "m02"], state, 1, server=server)
    detected = time.monotonic() - killed
    first = round_record(run, 1, server=server, timeout=TIMEOUT + RECORD_SLACK)
    recorded = time.monotonic() - killed
    cluster.note(
        f"round 1: server moved on after {detected:.1f} s, round recorded after "
        f"{recorded:.1f} s (timeout {TIMEOUT} s): trained {first['trained']}, "
        f"failures {first['failures']} {first['failure_reasons']}; m03 ledger: "
        + check_killed_ledger(cluster, "m03", state, 1)
    )
    assert detected <= TIMEOUT + 30, detected
    assert first["trained"] == ["m00", "m01", "m02"] and first["skipped"] is None, first
    assert first["failures"] >= 1, first  # m03's missing answer is on the record
    assert not tagged_processes(victim.tag)
    restarted = cluster.start_client("m03", state=state, init=False, name="nodes-m03-restart")
    wait_for_text(restarted, "as SuperNode", timeout=180)  # same ledger: opened, verified
    assert "verified privacy ledger" in restarted.err.read_text()

    # Round 2: m03 is back (min-clients 4 waits for it); m02's ClientApp alone dies.
    target = clients["m02"]
    (guard,) = wait_training([target], server=server, stale=guards_now(cluster))
    time.sleep(1.0)
    killed = time.monotonic()
    os.kill(guard, signal.SIGKILL)
    cluster.note("round 2: SIGKILL m02's ClientApp process (guard) alone while it trains")
    wait_next_stage(cluster, ["m00", "m01", "m03"], state, 2, server=server)
    detected = time.monotonic() - killed
    second = round_record(run, 2, server=server, timeout=TIMEOUT + RECORD_SLACK)
    recorded = time.monotonic() - killed
    cluster.note(
        f"round 2: server moved on after {detected:.1f} s, recorded after {recorded:.1f} s: "
        f"trained {second['trained']}, failures "
        f"{second['failures']} {second['failure_reasons']}; m02 ledger: "
        + check_killed_ledger(cluster, "m02", state, 2)
    )
    assert detected <= TIMEOUT + 30, detected
    assert second["trained"] == ["m00", "m01", "m03"], second  # m03 rejoined after restart
    assert 2 in cluster.ledger("m03", state).rounds
    assert target.popen.poll() is None, target.text()[-2000:]  # the node itself lives on

    # Round 3: ecrec-client alone dies (m00), and a whole node (m01): 2 < min-trainers.
    wait_training([clients["m00"], clients["m01"]], server=server, stale=guards_now(cluster))
    time.sleep(1.0)
    killed = time.monotonic()
    os.killpg(clients["m00"].popen.pid, signal.SIGKILL)
    kill_tree(clients["m01"])
    cluster.note("round 3: SIGKILL m00's ecrec-client (process group) and m01's whole node")
    clients["m00"].popen.wait(timeout=30)
    until(
        lambda: not tagged_processes(clients["m00"].tag),
        timeout=30,
        what="m00's SuperNode, SuperExec and ClientApp end with their ecrec-client",
        left=lambda: tagged_processes(clients["m00"].tag),
    )
    cluster.note(f"round 3: m00's node tree gone {time.monotonic() - killed:.1f} s after the kill")
    third = round_record(run, 3, server=server, timeout=TIMEOUT + RECORD_SLACK)
    recorded = time.monotonic() - killed
    cluster.note(
        f"round 3: recorded after {recorded:.1f} s: trained {third['trained']}, "
        f"skipped: {third['skipped']}, failures {third['failure_reasons']}; "
        + "; ".join(
            f"{m} ledger: " + check_killed_ledger(cluster, m, state, 3) for m in ("m00", "m01")
        )
    )
    # Two survivors: whether the killed nodes died before their masked update left (the
    # sum has 2 < min-trainers updates) or just after it (2 share-holders < threshold 3
    # answer the unmask stage), the round is skipped, never aggregated, never failed.
    assert third["trained"] == [] and "only 2 merchant(s)" in third["skipped"], third
    assert "round not aggregated" in third["skipped"], third
    code = server.wait(timeout=300)
    assert code == 0, server.text()[-4000:]
    cluster.note(f"server: {server.err.read_text().strip().splitlines()[-1]}")
    assert "SKIPPED: only 2 merchant(s)" in server.text()
    assert [r["round"] for r in records(run)] == [0, 1, 2, 3]
    assert_no_orphans(server.tag)
    for merchant in MERCHANTS:  # every spend was a training; nobody spent a round twice
        spent = cluster.ledger(merchant, state).rounds
        assert len(spent) == len(set(spent)), (merchant, spent)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_server_killed_mid_round_resumes_without_double_charges(cluster: Cluster) -> None:
    """The first test's run goes on to 5 rounds (``--resume``; m00 and m01 restart on their
    ledgers). SIGKILL of ecrec-server's process group while every node trains round 4: its
    SuperLink, SuperExec and ServerApp go with it. A second ``--resume`` continues from round
    3 (records 0-3 byte-identical), the nodes reconnect on their own; a node that spent
    round 4 in the lost attempt declines it ("already spent"), so no node is charged twice
    for one round number, and each node's ledger holds exactly the rounds its journal says
    it trained."""
    state, run = "nodes", cluster.root / "run"
    if [r["round"] for r in records(run)] != [0, 1, 2, 3]:
        pytest.skip("continues the run of test_killed_nodes_never_hang_a_round_or_tear_a_ledger")
    clients = cluster.clients
    for merchant in ("m00", "m01"):  # killed in round 3; same ledgers, no --init-ledger
        cluster.start_client(merchant, state=state, init=False, name=f"nodes-{merchant}-back")
    spent_first = {m: cluster.ledger(m, state).rounds for m in MERCHANTS}
    server = cluster.start_server("server-more", "run", resume=True, rounds=5)
    wait_training([clients[m] for m in MERCHANTS], server=server, timeout=600)
    time.sleep(1.0)
    before = (run / "metrics.jsonl").read_bytes()
    killed = time.monotonic()
    os.killpg(server.popen.pid, signal.SIGKILL)
    server.popen.wait(timeout=30)
    cluster.note("server: SIGKILL ecrec-server's process group while every node trains round 4")
    until(
        lambda: not tagged_processes(server.tag),
        timeout=60,  # Flower's graceful exits (5 s force timer each) on 2 loaded cores
        what="the SuperLink, SuperExec and ServerApp end with ecrec-server",
        left=lambda: tagged_processes(server.tag),
    )
    cluster.note(f"server: its whole tree gone {time.monotonic() - killed:.1f} s after the kill")
    assert [r["round"] for r in records(run)] == [0, 1, 2, 3]
    # The nodes finish training round 4 (the spend is recorded), then find no server.
    until(
        lambda: all(not guard_pids(clients[m]) for m in MERCHANTS),
        timeout=TIMEOUT + 60,
        what="the nodes' round-4 ClientApps end",
    )
    spent_lost = {m: 4 in cluster.ledger(m, state).rounds for m in MERCHANTS}
    cluster.note(f"server: round 4 spent in the lost attempt: {spent_lost}")

    resumed = cluster.start_server("server-resumed", "run", resume=True, rounds=5)
    code = resumed.wait(timeout=1200)
    output = resumed.text()
    assert code == 0, output[-4000:]
    cluster.note(f"resume: {next(ln for ln in output.splitlines() if 'submitted' in ln)}")
    cluster.note(f"resume: finished {time.monotonic() - killed:.0f} s after the kill")
    assert "rounds 4..5 (resumed)" in output
    after = (run / "metrics.jsonl").read_bytes()
    assert after.startswith(before), "records of rounds 0-3 changed on resume"
    done = records(run)
    assert [r["round"] for r in done] == [0, 1, 2, 3, 4, 5]
    redo, last = done[4], done[5]
    cluster.note(
        f"resume: round 4 trained {redo['trained']}, declined {redo['declined']}, "
        f"skipped: {redo['skipped']}; round 5 trained {last['trained']}"
    )
    for merchant in MERCHANTS:
        spent = cluster.ledger(merchant, state).rounds
        journal = cluster.journal(merchant, state)
        trained = [r["round"] for r in journal if r["event"] == "trained"]
        assert sorted(trained) == spent == sorted(set(spent)), (merchant, trained, spent)
        if spent_lost[merchant]:  # spent in the lost attempt: declined, never charged again
            assert merchant in redo["declined"], (merchant, redo)
            assert "already spent" in redo["decline_reasons"][merchant]
        else:
            assert merchant in redo["trained"], (merchant, redo)
        assert spent == [*spent_first[merchant], 4, 5], (merchant, spent_first, spent)
        assert merchant in last["trained"]
    assert_no_orphans(resumed.tag)
    for proc in clients.values():  # the nodes reconnected on their own and are still up
        assert proc.popen.poll() is None, proc.text()[-2000:]
        code = cluster.procs.stop(proc, signal.SIGTERM, timeout=60)
        assert code == 128 + signal.SIGTERM
        assert_no_orphans(proc.tag)


def test_kill_config_tolerates_one_dropout() -> None:
    """The deployment above relies on these SecAgg+ numbers: with 4 nodes Flower makes 4
    shares and a threshold of 3 (the nodes accept it: 2 x 3 > 4), so one node may drop."""
    from benchmarks.scaling import effective_shares
    from ecrec.config import loads_config
    from ecrec.node.checks import check_secagg_setup
    from ecrec.node.policy import NodePolicy

    fed = loads_config(KILL_CONFIG).federation
    shares, threshold = effective_shares(4, fed.num_shares, fed.reconstruction_threshold)
    assert (shares, threshold) == (4, 3)
    assert fed.min_trainers == 3 <= len(MERCHANTS) - 1
    setup = dict(sample_num=4, share_num=shares, threshold=threshold, max_weight=1.0, weight=1.0)
    assert check_secagg_setup(NodePolicy(), **setup) == []
    # Three nodes (a round after a death): 3 shares, threshold 2, still accepted.
    assert effective_shares(3, fed.num_shares, fed.reconstruction_threshold) == (3, 2)
