"""The project is a Flower app: ``flwr run .`` runs it on a local simulation federation.

Flower 1.42 starts a managed local SuperLink for the ``:local:`` connection and leaves
it running detached; every process started here inherits a unique tag in its
environment, so the test stops exactly what it started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from ecrec.deploy.processes import TAG_VARIABLE, tagged_processes
from ecrec.federation.client import CLIENT_COMPONENT
from ecrec.federation.server import SERVER_COMPONENT
from ecrec.federation.simulation import load_component
from ecrec.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[2]
FLWR = Path(sys.executable).parent / "flwr"


def test_simulation_and_deployment_load_the_same_app_objects() -> None:
    """pyproject.toml names the components that `ecrec simulate` loads; the deployment
    engine loads the same names, so both run the same ServerApp and ClientApp objects."""
    import ecrec_client.client_app
    import ecrec_server.server_app

    app = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["flwr"]["app"]
    assert app["components"] == {"serverapp": SERVER_COMPONENT, "clientapp": CLIENT_COMPONENT}
    assert load_component(SERVER_COMPONENT) is ecrec_server.server_app.app
    assert load_component(CLIENT_COMPONENT) is ecrec_client.client_app.app


def test_run_config_keys_are_the_ones_the_server_app_reads() -> None:
    from ecrec.config import RUN_CONFIG_OVERRIDES, RUN_CONFIG_SERVER_KEYS, config_from_run_config

    app = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["flwr"]["app"]
    declared = app["config"]
    assert set(declared) == set(RUN_CONFIG_OVERRIDES) | set(RUN_CONFIG_SERVER_KEYS)
    # The declared defaults change nothing: they are "as in config-file".
    from ecrec.config import load_config

    assert config_from_run_config(declared) == load_config(None)
    changed = config_from_run_config({**declared, "num-server-rounds": 2, "local-steps": 4})
    assert (changed.federation.rounds, changed.train.local_steps) == (2, 4)


@pytest.mark.slow
def test_flwr_run_dot_on_a_local_simulation_completes_two_rounds(tmp_path: Path) -> None:
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n'
        "options.num-supernodes = 3\n",
        encoding="utf-8",
    )
    run_dir = tmp_path / "run"
    tag = f"flwr-run-test-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "HF_HUB_OFFLINE": "1",
        TAG_VARIABLE: tag,
        "PATH": f"{FLWR.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    overrides = (
        f"num-server-rounds=2 config-file='{ROOT / 'configs' / 'tiny.toml'}' run-dir='{run_dir}'"
    )
    try:
        done = subprocess.run(
            [str(FLWR), "run", ".", "--run-config", overrides, "--stream"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        output = done.stdout + done.stderr
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(RunFolder(run_dir).read_metrics()) < 3:
            time.sleep(2)  # --stream may return as the run finishes writing
        records = RunFolder(run_dir).read_metrics()
        assert [r["round"] for r in records] == [0, 1, 2], output[-3000:]
        assert all(r["trained"] == ["m00", "m01", "m02"] for r in records[1:])
        assert (run_dir / "report.html").exists()
    finally:
        for proc in tagged_processes(tag):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    assert not (ROOT / "pyproject.toml").read_text("utf-8").count("# [tool.flwr.federations")
