"""``ecrec-server`` + ``ecrec-client`` on Flower's deployment engine, on 127.0.0.1.

One SuperLink (TLS, node authentication, SecAgg+) serves the whole module:
the refusal tests run while it waits for its merchants, then two good
merchants join and the run completes, then a second launch resumes it.
Every process is started with a unique tag in its environment (inherited by
all of Flower's helpers, detached or not), so the tests can prove that
nothing is left behind, however deep it was started.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from ecrec.deploy.processes import TAG_VARIABLE, descendants, free_port, tagged_processes

BIN = Path(sys.executable).parent
MODULE_TAG = f"deploy-test-{os.getpid()}-{secrets.token_hex(3)}"
FLOWER_NAMES = ("flower-superlink", "flower-supernode", "flower-superexec", "flwr-")
ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


@dataclass
class Proc:
    name: str
    tag: str
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    started: float = field(default_factory=time.monotonic)

    def text(self) -> str:
        return self.err.read_text(errors="replace") + self.out.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)


class Procs:
    """Launches ecrec commands with a tag each; stops and checks them at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], *, cwd: Path) -> Proc:
        tag = f"{name}-{secrets.token_hex(3)}"
        env = dict(os.environ)
        env[TAG_VARIABLE] = f"{MODULE_TAG}:{tag}"
        out, err = self.folder / f"{name}.out", self.folder / f"{name}.err"
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out.open("wb"),
            stderr=err.open("wb"),
            start_new_session=True,
        )
        proc = Proc(name, tag, popen, out, err)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if proc.popen.poll() is None:
            proc.popen.send_signal(sig)
        try:
            return proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()
            raise

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.stop(proc, timeout=60.0)
        for info in tagged_processes(MODULE_TAG):  # last resort: never leave anything
            os.kill(info.pid, signal.SIGKILL)


def _is_flower(info_cmdline: str) -> bool:
    programs = [Path(tok).name for tok in info_cmdline.split()[:2]]
    return any(p.startswith(n) for p in programs for n in FLOWER_NAMES)


def assert_no_orphans(
    tag: str, *, port: int | None = None, no_flower_children: bool = False, grace: float = 15.0
) -> None:
    """Nothing carrying ``tag`` (or naming ``port``) is alive; zombies do not count.

    ``no_flower_children``: also no Flower process anywhere below this test process
    (only true once every launcher of the module has ended).
    """
    deadline = time.monotonic() + grace
    while True:
        left = tagged_processes(tag)
        flower_children = (
            [p for p in descendants(os.getpid()) if _is_flower(p.cmdline)]
            if no_flower_children
            else []
        )
        by_port: list[str] = []
        if port is not None:
            found = subprocess.run(
                ["pgrep", "-af", f"127.0.0.1:{port}|--port {port}"],
                capture_output=True,
                text=True,
            ).stdout
            by_port = [ln for ln in found.splitlines() if "pgrep" not in ln]
        if not (left or flower_children or by_port) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"orphans: {[(p.pid, p.cmdline[:120]) for p in left]}"
    assert not flower_children, f"flower children: {[p.cmdline[:120] for p in flower_children]}"
    assert not by_port, f"processes naming port {port}: {by_port}"


def ecrec(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [str(BIN / "ecrec"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


MERCHANTS = ("m00", "m01", "m02")
#: The run's request: the tiny ranker, an explicit σ and a roomy plan, so that a resumed
#: run's extra round fits every merchant's budget.
DEPLOY_CONFIG = """
[data]
merchants = 3

[model]
base-model = "tiny"
max-length = 32

[train]
local-steps = 2
batch-size = 16
learning-rate = 3e-3

[privacy]
budget-epsilon = 50.0
noise-multiplier = 1.5

[federation]
rounds = 2
num-shares = 1.0
reconstruction-threshold = 1.0
min-clients = 3
min-trainers = 3

[report]
explain = false
"""


@dataclass
class Deployment:
    root: Path
    port: int
    procs: Procs
    server: Proc | None = None
    clients: list[Proc] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_argv(self, *extra: str, merchant: str = "m00", state: str = "") -> list[str]:
        """An ecrec-client for ``merchant``; its node state (ledger, key, anchor, journal)
        lives in ``state/<merchant>`` (a separate one per refusal test)."""
        folder = self.root / (state or "nodes") / merchant
        return [
            str(BIN / "ecrec-client"),
            "--server",
            self.address,
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
            "30",
            *extra,
        ]

    def ledger(self, merchant: str):
        from ecrec.privacy.ledger import PrivacyLedger

        folder = self.root / "nodes" / merchant
        return PrivacyLedger.load(folder / "ledger.json", key_file=folder / "secrets" / "node.key")

    def journal(self, merchant: str) -> list[dict]:
        path = self.root / "nodes" / merchant / "journal.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_server_toml(
    root: Path, port: int, name: str, *, rounds: int = 0, config: str = "request.toml"
) -> Path:
    path = root / name
    path.write_text(
        f"""
[server]
address = "127.0.0.1:{port}"
ca-cert = "certs/ca.crt"
server-cert = "certs/server.crt"
server-key = "certs/server.key"
node-keys = ["certs/node-1.pub", "certs/node-2.pub", "certs/node-3.pub"]
database = "state/superlink.db"
run-dir = "run"
validation-path = "data/validation.parquet"
ecrec-config = "{root / config}"
app-dir = "{ROOT}"
rounds = {rounds}
wait-for-nodes-timeout = 600
run-timeout = 1200
"""
    )
    return path


def wait_for_text(proc: Proc, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.text():
        if proc.popen.poll() is not None:
            pytest.fail(f"{proc.name} exited {proc.popen.returncode}:\n{proc.text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{proc.name}: no {text!r} within {timeout} s:\n{proc.text()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A TLS SuperLink that first runs a HOSTILE request (train.dp = false)."""
    root = tmp_path_factory.mktemp("deploy")
    started = time.monotonic()
    ecrec("certs", "--out", "certs", "--nodes", "4", cwd=root)  # node-4: never registered
    ecrec("certs", "--out", "other-ca", cwd=root)
    ecrec("data", "synth", "--merchants", "3", "--out", "data", "--seed", "0", cwd=root)
    (root / "request.toml").write_text(DEPLOY_CONFIG)
    (root / "hostile.toml").write_text(DEPLOY_CONFIG.replace("[train]", "[train]\ndp = false"))
    port = free_port()
    procs = Procs(root)
    dep = Deployment(root=root, port=port, procs=procs)
    try:
        dep.server = procs.start(
            "server-hostile",
            [
                str(BIN / "ecrec-server"),
                "--config",
                str(write_server_toml(root, port, "hostile-server.toml", config="hostile.toml")),
            ],
            cwd=root,
        )
        wait_for_text(dep.server, "registered 3 node key(s)", timeout=300)
        dep.timings["setup (certs, data, SuperLink up, keys registered)"] = (
            time.monotonic() - started
        )
        yield dep
    finally:
        procs.stop_all()
        for name, seconds in dep.timings.items():
            print(f"[timing] {name}: {seconds:.1f} s")
        assert_no_orphans(MODULE_TAG, port=port, no_flower_children=True)


def run_refused_client(dep: Deployment, name: str, *extra: str) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = dep.procs.start(name, dep.client_argv("--init-ledger", *extra, state=name), cwd=dep.root)
    try:
        code = proc.wait(timeout=180)
    finally:
        if proc.popen.poll() is None:
            dep.procs.stop(proc, signal.SIGKILL)
    seconds = time.monotonic() - started
    dep.timings[name] = seconds
    assert_no_orphans(proc.tag)
    return code, proc.err.read_text(), seconds


@pytest.mark.slow
def test_unregistered_node_key_is_refused(deployment: Deployment) -> None:
    code, err, _ = run_refused_client(
        deployment,
        "client-unregistered",
        "--key",
        str(deployment.root / "certs" / "node-4.key"),
        "--ca",
        str(deployment.root / "certs" / "ca.crt"),
    )
    assert code == 5, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "ecrec-client: error: the server refused this node (unregistered key, wrong CA or "
        "TLS mismatch)"
    ), err
    assert "has the server operator registered node-4.pub" in last
    assert "Traceback" not in err


@pytest.mark.slow
def test_wrong_ca_is_refused(deployment: Deployment) -> None:
    code, err, _ = run_refused_client(
        deployment,
        "client-wrong-ca",
        "--key",
        str(deployment.root / "certs" / "node-1.key"),
        "--ca",
        str(deployment.root / "other-ca" / "ca.crt"),
    )
    assert code == 5, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ecrec-client: error: the server at 127.0.0.1:"), err
    assert "is not trusted by --ca" in last and "other-ca/ca.crt" in last
    assert "Traceback" not in err


@pytest.mark.slow
def test_insecure_client_is_refused_by_tls_server(deployment: Deployment) -> None:
    code, err, _ = run_refused_client(deployment, "client-insecure", "--insecure")
    assert code == 5, err
    last = err.strip().splitlines()[-1]
    assert "requires TLS and refuses --insecure nodes" in last, err
    assert "Traceback" not in err


def _start_merchants(dep: Deployment) -> None:
    certs = dep.root / "certs"
    for i, merchant in enumerate(MERCHANTS, start=1):
        dep.clients.append(
            dep.procs.start(
                f"client-{merchant}",
                dep.client_argv(
                    "--init-ledger",
                    "--budget-epsilon",
                    "50",
                    "--key",
                    str(certs / f"node-{i}.key"),
                    "--ca",
                    str(certs / "ca.crt"),
                    merchant=merchant,
                ),
                cwd=dep.root,
            )
        )


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_nodes_decline_a_server_that_asks_for_no_dp(deployment: Deployment) -> None:
    """A hostile server's run config says train.dp = false: every merchant's node
    declines round 1 with the reason, spends nothing, sends nothing, and the server's
    run ends with a message naming the setting."""
    dep = deployment
    assert dep.server is not None
    started = time.monotonic()
    _start_merchants(dep)
    try:
        code = dep.server.wait(timeout=1200)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server did not finish:\n{dep.server.text()[-4000:]}")
    dep.timings["hostile run: every node declines"] = time.monotonic() - started
    err = dep.server.err.read_text()
    print("[server]", err.strip().splitlines()[-1])
    assert code == 1, err[-4000:]
    last = err.strip().splitlines()[-1]
    assert "round 1 failed" in last and "train.dp" in last, last
    assert all(m in last for m in MERCHANTS), last
    assert_no_orphans(dep.server.tag)
    for merchant, proc in zip(MERCHANTS, dep.clients, strict=True):
        wait_for_text(proc, "round 1: declined: train.dp", timeout=120)
        line = next(ln for ln in proc.err.read_text().splitlines() if "declined" in ln)
        print(f"[{merchant}]", line.strip())
        assert dep.ledger(merchant).rounds == []  # nothing spent
        declines = [r for r in dep.journal(merchant) if r["event"] == "declined"]
        assert declines and "train.dp" in declines[0]["settings"]
    records = [
        json.loads(ln) for ln in (dep.root / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["round"] for r in records] == [0]  # no round was ever aggregated


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_three_merchants_complete_a_secagg_run(deployment: Deployment) -> None:
    dep = deployment
    if not dep.clients:
        pytest.skip("needs the merchants started by the hostile-server test")
    started = time.monotonic()
    (dep.root / "run").rename(dep.root / "run-hostile")
    server = dep.procs.start(
        "server",
        [
            str(BIN / "ecrec-server"),
            "--config",
            str(write_server_toml(dep.root, dep.port, "s.toml")),
        ],
        cwd=dep.root,
    )
    try:
        code = server.wait(timeout=1400)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server did not finish:\n{server.text()[-4000:]}")
    dep.timings["run: 2 SecAgg+ rounds, 3 nodes"] = time.monotonic() - started
    output = server.text()
    assert code == 0, output[-4000:]
    assert_no_orphans(server.tag)  # the server stopped its SuperLink, SuperExec, ServerApp
    run = dep.root / "run"
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [0, 1, 2]
    assert all(r["trained"] == list(MERCHANTS) for r in records[1:])
    privacy = json.loads((run / "privacy.json").read_text())
    # The server learnt who trained, never a merchant's budget or spend.
    for merchant in MERCHANTS:
        assert privacy["merchants"][merchant]["rounds"] == [
            {"round": 1, "trained": True},
            {"round": 2, "trained": True},
        ]
        assert "budget_epsilon" not in json.dumps(privacy["merchants"][merchant])
        assert dep.ledger(merchant).rounds == [1, 2]
    with (
        np.load(run / "checkpoints" / "round_0000.npz") as r0,
        np.load(run / "checkpoints" / "round_0002.npz") as r2,
    ):
        assert any(not np.allclose(r0[k], r2[k]) for k in r0.files), "global model never changed"
    assert "metrics.jsonl (rounds 0-2)" in server.out.read_text()
    for proc in dep.clients:
        assert proc.popen.poll() is None, f"{proc.name} died:\n{proc.text()[-2000:]}"
        assert "as SuperNode" in proc.err.read_text()
        assert "round 2: trained" in proc.err.read_text()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_resume_adds_a_round_and_nodes_reconnect(deployment: Deployment) -> None:
    dep = deployment
    if not (dep.root / "run" / "metrics.jsonl").exists():
        pytest.skip("needs the completed run of test_three_merchants_complete_a_secagg_run")
    started = time.monotonic()
    config = write_server_toml(dep.root, dep.port, "resume.toml", rounds=3)
    server = dep.procs.start(
        "server-resume",
        [str(BIN / "ecrec-server"), "--config", str(config), "--resume"],
        cwd=dep.root,
    )
    try:
        code = server.wait(timeout=1100)
    except subprocess.TimeoutExpired:
        pytest.fail(f"resumed server did not finish:\n{server.text()[-4000:]}")
    dep.timings["resume: 1 more round (nodes reconnect)"] = time.monotonic() - started
    assert code == 0, server.text()[-4000:]
    assert "3 already registered" in server.text()
    records = [
        json.loads(ln) for ln in (dep.root / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert records[3]["trained"] == list(MERCHANTS)
    assert all(dep.ledger(m).rounds == [1, 2, 3] for m in MERCHANTS)
    assert_no_orphans(server.tag)

    # Clients stop cleanly on SIGTERM and take every helper with them.
    for proc in dep.clients:
        code = dep.procs.stop(proc, signal.SIGTERM, timeout=60)
        assert code == 128 + signal.SIGTERM, proc.text()[-2000:]
        assert "ecrec-client: stopped by SIGTERM" in proc.err.read_text()
        assert_no_orphans(proc.tag)
    assert_no_orphans(MODULE_TAG, port=dep.port, no_flower_children=True)


# --------------------------------------------------------------------------- fast checks
# No Flower process involved: the supervisor itself, and the one-line errors
# both launchers give before they start anything.

_TREE = r"""
import os, subprocess, sys, time
# A child in our group, and a grandchild that detaches into its own session,
# as flower-superlink does with flower-superexec.
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
print("ready", flush=True)
time.sleep(300)
"""


def test_supervisor_leaves_no_descendant_behind() -> None:
    from ecrec.deploy.processes import Supervisor

    supervisor = Supervisor("test-tree", stop_timeout=5.0)
    child = supervisor.start("tree", [sys.executable, "-c", _TREE], env=supervisor.child_env())
    deadline = time.monotonic() + 30
    while "ready" not in child.lines and time.monotonic() < deadline:
        time.sleep(0.1)
    family = tagged_processes(supervisor.tag)
    assert len(family) == 3, family
    started = time.monotonic()
    supervisor.stop_all()
    assert time.monotonic() - started < 30
    assert tagged_processes(supervisor.tag) == []
    assert child.poll() is not None


def test_sigterm_becomes_interrupted_and_stops_children(tmp_path: Path) -> None:
    script = tmp_path / "launcher.py"
    script.write_text(
        "import sys, time\n"
        "from ecrec.deploy.processes import Interrupted, Supervisor\n"
        "s = Supervisor('sig')\n"
        "try:\n"
        "    with s.handle_signals():\n"
        "        s.start('sleeper', [sys.executable, '-c', 'import time; time.sleep(300)'],\n"
        "                env=s.child_env())\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(300)\n"
        "except Interrupted as stop:\n"
        "    print('stopped', stop.name, flush=True)\n"
        "    sys.exit(stop.exit_code)\n"
    )
    tag = f"sigtest-{secrets.token_hex(3)}"
    env = {**os.environ, TAG_VARIABLE: tag}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    assert len(tagged_processes(tag)) == 2  # the launcher and its child
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopped SIGTERM" in out
    assert_no_orphans(tag, grace=5.0)


def _server_toml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text("[server]\n" + body)
    return path


def test_server_config_errors_are_one_line(tmp_path: Path) -> None:
    from ecrec.deploy.server import load_settings
    from ecrec.errors import ConfigError

    cases = {
        'run-dir = "r"\n': "server.validation-path is required",
        'run-dir = "r"\nvalidation-path = "v"\napp-dir = "."\n': (
            "server.ca-cert is required (TLS is on"
        ),
        'run-dir = "r"\nvalidation-path = "v"\nport = 1\n': "server.port: unknown key",
        'run-dir = "r"\nvalidation-path = "v"\ninsecure = "no"\n': "expected a boolean",
        'run-dir = "r"\nvalidation-path = "v"\naddress = "x"\n': "expected HOST:PORT",
    }
    for body, message in cases.items():
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            load_settings(_server_toml(tmp_path, body))
    settings = load_settings(
        _server_toml(tmp_path, 'run-dir = "r"\nvalidation-path = "v"\ninsecure = true\n')
    )
    assert settings.listen.port == 9092 and settings.connect.host == "127.0.0.1"
    assert settings.run_dir == (tmp_path / "r").resolve()  # relative to the file
    example = load_settings(CONFIGS / "server.example.toml")
    assert example.tls is not None and len(example.node_keys) == 2
    assert example.listen.is_wildcard and str(example.connect) == "127.0.0.1:9092"


def test_server_checks_before_starting_anything(tmp_path: Path) -> None:
    import socket

    from ecrec.deploy.server import check_before_start, load_settings, resolve_run_config
    from ecrec.errors import ConfigError, EcrecError

    ecrec("certs", "--out", "certs", "--nodes", "2", cwd=tmp_path)
    ecrec("data", "synth", "--merchants", "3", "--out", "data", cwd=tmp_path)
    (tmp_path / "request.toml").write_text(DEPLOY_CONFIG)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write_server_toml(tmp_path, port, "s.toml")
        settings = load_settings(path)
        config = resolve_run_config(settings)
        assert config.federation.secagg_max_weight == 1.0  # uniform weights: no row counts
        with pytest.raises(EcrecError, match=r"node-3\.pub: node public key not found"):
            check_before_start(settings, config, resume=False)
        two_keys = tmp_path / "two.toml"
        two_keys.write_text(path.read_text().replace(', "certs/node-3.pub"', ""))
        with pytest.raises(ConfigError, match=r"min-clients is 3 but server\.node-keys registers"):
            check_before_start(load_settings(two_keys), config, resume=False)
        ecrec("certs", "node-key", "--out", "certs/node-3", cwd=tmp_path)
        foreign = tmp_path / "foreign-app"
        foreign.mkdir()
        (foreign / "pyproject.toml").write_text(
            '[tool.flwr.app.components]\nserverapp = "x:app"\nclientapp = "rogue:app"\n'
        )
        other_app = tmp_path / "other.toml"
        other_app.write_text(
            path.read_text().replace(f'app-dir = "{ROOT}"', f'app-dir = "{foreign}"')
        )
        with pytest.raises(ConfigError, match="not the ecrec apps"):
            check_before_start(load_settings(other_app), config, resume=False)
        with pytest.raises(ConfigError, match="port is already in use"):
            check_before_start(settings, config, resume=False)
        with pytest.raises(ConfigError, match="nothing to resume"):
            check_before_start(settings, config, resume=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="already holds a run; use --resume"):
        check_before_start(settings, config, resume=False)


def test_server_submits_the_project_app_with_run_config_overrides(tmp_path: Path) -> None:
    """No generated app: ecrec-server submits this project (pyproject's [tool.flwr.app])
    with the run's values as Flower run-config overrides the ServerApp reads."""
    from ecrec.config import RUN_CONFIG_OVERRIDES, RUN_CONFIG_SERVER_KEYS
    from ecrec.deploy.preflight import run_config_values
    from ecrec.deploy.server import load_settings
    from ecrec.deploy.settings import installed_app_dir

    assert installed_app_dir() == ROOT  # `pip install -e .` recorded the project folder
    path = write_server_toml(tmp_path, 9999, "s.toml", rounds=4)
    values = run_config_values(load_settings(path), resume=True)
    assert set(values) <= set(RUN_CONFIG_OVERRIDES) | set(RUN_CONFIG_SERVER_KEYS)
    assert values["num-server-rounds"] == 4 and values["resume"] is True
    assert values["config-file"] == str(tmp_path / "request.toml")


def test_client_input_errors_are_one_line(tmp_path: Path) -> None:
    ecrec("certs", "--out", "certs", "--nodes", "1", cwd=tmp_path)
    ecrec("data", "synth", "--merchants", "2", "--out", "data", cwd=tmp_path)
    certs, data = tmp_path / "certs", tmp_path / "data"
    base = ["--server", "127.0.0.1:1", "--connect-timeout", "1"]
    good = ["--key", str(certs / "node-1.key"), "--ca", str(certs / "ca.crt")]
    m00 = ["--data", str(data / "merchant_m00.parquet")]
    ledger = ["--ledger", str(tmp_path / "l.json"), "--ledger-key-file", str(tmp_path / "k.key")]
    bad_ledger = tmp_path / "corrupt.ledger.json"
    bad_ledger.write_text('{"not": "a ledger"}')  # fail closed, before connecting
    bad_key = tmp_path / "corrupt.key"
    bad_key.write_bytes(b"k" * 32)
    bad_key.chmod(0o600)
    cases = [
        ([*m00, *ledger, "--init-ledger", "--budget-epsilon", "0", *good], 2,
         "--budget-epsilon must be a number > 0"),
        (["--data", str(data / "nope.parquet"), *ledger, *good], 2, "not found"),
        ([*m00, *ledger, "--ca", str(certs / "ca.crt")], 2, "--key is required"),
        ([*m00, *ledger, "--key", str(certs / "node-1.key"),
          "--ca", str(certs / "server.crt")], 2, "not a CA certificate"),
        ([*m00, *ledger, "--key", str(certs / "node-1.pub"),
          "--ca", str(certs / "ca.crt")], 2, "not an unencrypted OpenSSH private key"),
        ([*m00, *ledger, "--insecure", *good], 2, "cannot be combined"),
        ([*m00, *ledger, *good], 4, "init-ledger"),  # no ledger: never a fresh budget
        ([*m00, "--ledger", str(bad_ledger), "--ledger-key-file", str(bad_key), *good], 4, ""),
        ([*m00, *ledger, "--init-ledger", *good], 6, "cannot reach the server at 127.0.0.1:1"),
    ]  # fmt: skip
    for args, code, message in cases:
        done = subprocess.run(
            [str(BIN / "ecrec-client"), *base, *args], capture_output=True, text=True, timeout=120
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == code, (args, done.stderr)
        assert lines[-1].startswith("ecrec-client: error: ") and message in lines[-1], lines
        assert "Traceback" not in done.stderr
