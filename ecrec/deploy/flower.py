"""Flower's deployment commands, driven as subprocesses (no ``flwr`` import).

ecrec talks to Flower's deployment engine only through its documented
command-line tools (``flower-superlink``, ``flower-supernode``, ``flwr``), so
the library stays Flower-free and what ecrec-server does can be repeated by
hand. Facts this module relies on (Flower 1.42, checked in its source):

* ``flower-superlink`` serves the Fleet, Control and Runtime APIs over HTTPS on
  one ``--host``/``--port``; it starts ``flower-superexec`` by name, so the
  venv's ``bin`` must be on ``PATH``.
* ``flwr`` finds SuperLinks through named connections in
  ``$FLWR_HOME/config.toml`` (``[superlink.NAME] address, root-certificates,
  insecure``); we write a private one per launch.
* Run-config overrides are only accepted for keys declared in the app's
  ``[tool.flwr.app.config]`` (the project's pyproject.toml); ecrec-server passes
  them as a TOML file (``--run-config FILE.toml``).
* ``flwr supernode register`` takes an OpenSSH EC public key; registering a
  key twice answers "Public key already in use" (fine on ``--resume``).
* ``flower-supernode --node-config PATH.toml`` reads a TOML file, which avoids
  the quoting pitfalls of the inline ``k="v"`` form for arbitrary paths.
* Fatal SuperNode errors are logged as ``Exit Code: NNN`` while the process
  exits 1; 305 means the SuperLink refused or could not be reached.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from ecrec.deploy.net import Address
from ecrec.errors import EcrecError

CONNECTION = "ecrec"

#: Flower settings every child gets: no telemetry or update checks (offline
#: invariant) and no per-run virtualenv (that would pull a multi-GB CUDA torch).
FLOWER_ENV: dict[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}

EXIT_CODE_LINE = re.compile(r"Exit Code: (\d+)")
SUPERNODE_ID_LINE = re.compile(r"SuperNode ID: (\d+)")
#: Flower's "SuperNode could not reach/was refused by the SuperLink" exit code.
SUPERNODE_CONNECTION_ERROR = 305


class FlowerError(EcrecError):
    """A Flower command failed; the message carries Flower's own reason."""

    exit_code = 1


def tool(name: str) -> str:
    """The path of a Flower console script from *this* interpreter's environment."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FlowerError(f"{name} not found: is flwr installed in this environment?")
    return found


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def superlink_argv(
    listen: Address,
    *,
    tls: TlsFiles | None,
    database: Path,
    node_auth: bool,
    superexec_secret: Path | None = None,
) -> list[str]:
    """``flower-superlink``; with ``superexec_secret`` in process isolation, so that its
    SuperExec/Runtime API requires the shared secret (Flower ignores the secret in the
    default subprocess isolation) and ecrec-server starts the SuperExec itself."""
    argv = [
        tool("flower-superlink"),
        "--host",
        listen.host or "0.0.0.0",
        "--port",
        str(listen.port),
    ]
    if tls is None:
        argv.append("--insecure")
    else:
        argv += [
            "--ssl-ca-certfile",
            str(tls.ca_cert),
            "--ssl-certfile",
            str(tls.server_cert),
            "--ssl-keyfile",
            str(tls.server_key),
        ]
    if node_auth:
        argv.append("--enable-supernode-auth")
    argv += ["--database", str(database), "--disable-runtime-dependency-installation"]
    if superexec_secret is not None:
        argv += ["--isolation", "process", "--superexec-auth-secret-file", str(superexec_secret)]
    return argv


def superexec_argv(runtime: Address, *, ca: Path | None, secret: Path) -> list[str]:
    """``flower-superexec`` for a SuperLink in process isolation: it launches the
    ServerApp processes, authenticated to the Runtime API with the shared secret."""
    argv = [tool("flower-superexec"), "--runtime-api-address", str(runtime)]
    argv += ["--root-certificates", str(ca)] if ca is not None else ["--insecure"]
    argv += ["--superexec-auth-secret-file", str(secret)]
    return argv


def write_secret(path: Path) -> Path:
    """A fresh random shared secret, readable only by this user."""
    import os
    import secrets

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return path


def supernode_argv(
    superlink: Address,
    *,
    ca: Path | None,
    key: Path | None,
    node_config: Path,
    runtime_port: int,
    superexec_secret: Path | None = None,
) -> list[str]:
    """``flower-supernode``; with ``superexec_secret`` in process isolation: it starts no
    SuperExec itself, and its Runtime API (on 127.0.0.1) hands tasks only to a SuperExec
    holding the secret -- ecrec-client starts that one, with the node guard."""
    argv = [tool("flower-supernode"), "--superlink", str(superlink)]
    argv += ["--root-certificates", str(ca)] if ca is not None else ["--insecure"]
    if key is not None:
        argv += ["--auth-supernode-private-key", str(key)]
    argv += ["--node-config", str(node_config), "--port", str(runtime_port)]
    if superexec_secret is not None:
        argv += ["--isolation", "process", "--superexec-auth-secret-file", str(superexec_secret)]
    return argv


def write_node_config(path: Path, values: Mapping[str, str | float | int | bool]) -> Path:
    """The node config as a TOML file (``--node-config FILE.toml``); never shipped anywhere."""
    path.write_text(tomli_w.dumps(dict(values)), encoding="utf-8")
    return path


def write_run_config(path: Path, values: Mapping[str, str | bool | int | float]) -> Path:
    """Run-config overrides as a TOML file (``flwr run --run-config FILE.toml``): no
    quoting pitfalls for paths, and Flower refuses keys the app does not declare."""
    path.write_text(tomli_w.dumps(dict(values)), encoding="utf-8")
    return path


class FlowerCli:
    """``flwr`` commands against one SuperLink, through a private ``FLWR_HOME``."""

    def __init__(
        self, home: Path, *, address: Address, ca_cert: Path | None, env: Mapping[str, str]
    ) -> None:
        self.home = home
        self.address = address
        connection: dict[str, Any] = {"address": str(address)}
        if ca_cert is None:
            connection["insecure"] = True
        else:
            connection["root-certificates"] = str(ca_cert)
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            tomli_w.dumps({"superlink": {"default": CONNECTION, CONNECTION: connection}}),
            encoding="utf-8",
        )
        self.env = {**env, "FLWR_HOME": str(home)}

    def call(self, args: Sequence[str], *, timeout: float = 120.0) -> dict[str, Any]:
        """Run ``flwr ARGS --format json``; Flower's error text becomes a :class:`FlowerError`."""
        argv = [tool("flwr"), *args, "--format", "json"]
        try:
            done = subprocess.run(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise FlowerError(
                f"`flwr {' '.join(args)}` did not answer within {timeout:.0f} s"
            ) from None
        payload = _last_json(done.stdout)
        if payload is None:
            detail = _one_line(done.stderr or done.stdout) or f"exit code {done.returncode}"
            raise FlowerError(f"`flwr {' '.join(args)}` failed: {detail}")
        if not payload.get("success", False):
            raise FlowerError(
                f"`flwr {' '.join(args)}` failed: "
                + _one_line(str(payload.get("error-message", "no reason given")))
            )
        return payload

    def ping(self) -> bool:
        """True once the SuperLink answers Control API calls."""
        try:
            self.call(["ls", CONNECTION], timeout=30.0)
        except FlowerError:
            return False
        return True

    def register(self, public_key: Path, *, name: str | None = None) -> str:
        """Register a node key; returns the node id, or "" if it was registered already."""
        args = ["supernode", "register", str(public_key), CONNECTION]
        if name:
            args += ["--name", name]
        try:
            payload = self.call(args)
        except FlowerError as err:
            if "already in use" in str(err):
                return ""
            raise
        return str(payload.get("node-id", ""))

    def unregister(self, node_id: str) -> None:
        self.call(["supernode", "unregister", node_id, CONNECTION])

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.call(["supernode", "ls", CONNECTION]).get("nodes", []))

    def run(self, app: Path, *, run_config: Path | None = None) -> str:
        """Submit the Flower app in folder ``app`` (built into a FAB by ``flwr``)."""
        args = ["run", str(app), CONNECTION]
        if run_config is not None:
            args += ["--run-config", str(run_config)]
        payload = self.call(args, timeout=300.0)
        run_id = payload.get("run-id")
        if not run_id:
            raise FlowerError("`flwr run` did not return a run id")
        return str(run_id)

    def run_info(self, run_id: str) -> dict[str, Any]:
        runs = self.call(["ls", CONNECTION, "--run-id", run_id]).get("runs", [])
        if not runs:
            raise FlowerError(f"run {run_id} is not known to the SuperLink")
        return dict(runs[0])

    def stop(self, run_id: str) -> None:
        self.call(["stop", run_id, CONNECTION], timeout=60.0)


def _last_json(text: str) -> dict[str, Any] | None:
    """The JSON object ``flwr --format json`` printed (it may follow other output)."""
    start = text.find("{")
    while start != -1:
        try:
            value = json.loads(text[start:])
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        return value if isinstance(value, dict) else None
    return None


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Using SuperLink")]
    return " ".join(lines)[:500]


#: Lines Flower prints around every connection failure; they add no information.
_BOILERPLATE = frozenset(
    {
        "Failed to initialize the connection to the SuperLink.",
        "The SuperNode could not establish a connection to the SuperLink.",
    }
)


def explain_supernode_exit(lines: Sequence[str]) -> tuple[int | None, str]:
    """Flower's exit code and reason from a SuperNode's last log lines."""
    code: int | None = None
    reason: list[str] = []
    for i, line in enumerate(lines):
        match = EXIT_CODE_LINE.search(line)
        if match:
            code = int(match.group(1))
            reason = []
            for follow in lines[i + 1 :]:
                text = follow.strip()
                if not text or text.startswith("For more information"):
                    break
                if text not in _BOILERPLATE:
                    reason.append(text)
    return code, " ".join(reason)


__all__ = [
    "FLOWER_ENV",
    "FlowerCli",
    "FlowerError",
    "TlsFiles",
    "explain_supernode_exit",
    "superexec_argv",
    "superlink_argv",
    "supernode_argv",
    "tool",
    "write_node_config",
    "write_run_config",
    "write_secret",
]
