"""ecrec-server and its SuperLink: start-up waits, retried ``flwr`` queries, registering
(and revoking) merchants' node keys, and waiting until enough merchants are online."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from ecrec.certs import check_node_public_key
from ecrec.deploy.flower import FlowerCli, FlowerError
from ecrec.deploy.processes import Child
from ecrec.deploy.settings import ServerSettings
from ecrec.errors import ConfigError, EcrecError
from ecrec.runfolder import atomic_write_json

T = TypeVar("T")


class RunFailedError(EcrecError):
    """The federation started but did not complete every round."""

    exit_code = 1


def _startup_failure(child: Child, log_path: Path) -> str:
    interesting = [
        ln for ln in child.tail(40) if "ERROR" in ln or "Error" in ln or "Exit Code" in ln
    ]
    detail = interesting[-1].strip() if interesting else (child.tail(1) or ["no output"])[0]
    return (
        f"flower-superlink exited (code {child.poll()}) during start-up: {detail} (log: {log_path})"
    )


def _retrying(call: Callable[[], T], alive: Callable[[], None], attempts: int = 5) -> T:
    """A ``flwr`` query, retried: one slow answer on a busy machine must not end a run."""
    for attempt in range(attempts):
        try:
            return call()
        except FlowerError:
            alive()  # a dead SuperLink is reported as such, not as a CLI error
            if attempt == attempts - 1:
                raise
            time.sleep(2.0 * (attempt + 1))
    raise AssertionError("unreachable")


def _alive_check(child: Child, log_path: Path) -> Callable[[], None]:
    def check() -> None:
        if child.poll() is not None:
            child.wait_output()
            raise RunFailedError(_startup_failure(child, log_path).replace("during start-up", ""))

    return check


def _wait_superlink(flwr: FlowerCli, superlink: Child, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if superlink.poll() is not None:
            superlink.wait_output()
            raise RunFailedError(_startup_failure(superlink, log_path))
        if flwr.ping():
            return
        if time.monotonic() > deadline:
            raise RunFailedError(
                f"the SuperLink did not answer within {timeout:.0f} s (log: {log_path})"
            )
        time.sleep(1.0)


def _registry_path(settings: ServerSettings) -> Path:
    return settings.database.with_name(settings.database.name + ".keys.json")


def _register_nodes(flwr: FlowerCli, settings: ServerSettings, console: Console) -> int:
    """Register ``node-keys``; unregister keys registered earlier but no longer listed.

    The SuperLink's database outlives a launch (it is what makes ``--resume``
    work), so removing a merchant from ``node-keys`` must also revoke it there.
    Flower only reports a node id when a key is first registered, so the ids
    are remembered next to the database.
    """
    path = _registry_path(settings)
    registry: dict[str, dict[str, str]] = {}
    if path.exists():
        try:
            registry = dict(json.loads(path.read_text("utf-8")))
        except (json.JSONDecodeError, OSError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: unreadable node registry ({err}); restore it") from None
    current = {check_node_public_key(key).split()[1]: key for key in settings.node_keys}
    new = 0
    for blob, key in current.items():
        node_id = flwr.register(key, name=key.stem)
        if node_id:
            new += 1
            registry[blob] = {"node-id": node_id, "file": str(key)}
    revoked = [blob for blob in registry if blob not in current]
    for blob in revoked:
        entry = registry.pop(blob)
        try:
            flwr.unregister(entry["node-id"])
        except EcrecError as err:
            if "not found" not in str(err).lower():
                raise
        console.print(f"unregistered node {entry['node-id']} ({entry['file']}: not in node-keys)")
    atomic_write_json(path, registry)
    if settings.node_keys:
        known = len(settings.node_keys) - new
        console.print(
            f"registered {new} node key(s)" + (f" ({known} already registered)" if known else "")
        )
    return len(settings.node_keys)


def _wait_for_nodes(
    flwr: FlowerCli,
    superlink: Child,
    needed: int,
    settings: ServerSettings,
    console: Console,
    log_path: Path,
) -> None:
    alive = _alive_check(superlink, log_path)
    deadline = time.monotonic() + settings.wait_for_nodes_timeout
    online = 0
    with console.status(f"waiting for merchants: 0/{needed} online...") as status:
        while True:
            alive()
            nodes = _retrying(flwr.nodes, alive)
            online = sum(1 for n in nodes if n.get("status") == "online")
            if online >= needed:
                break
            status.update(f"waiting for merchants: {online}/{needed} online...")
            if settings.wait_for_nodes_timeout and time.monotonic() > deadline:
                host = "THIS-HOST" if settings.listen.is_wildcard else settings.listen.host
                raise RunFailedError(
                    f"only {online} of the {needed} merchant nodes needed came online within "
                    f"{settings.wait_for_nodes_timeout:.0f} s; each merchant runs "
                    f"`ecrec-client --server {host}:{settings.listen.port} ...` with a "
                    "registered key"
                )
            time.sleep(3.0)
    console.print(f"{online} merchant node(s) online")
