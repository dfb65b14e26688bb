"""``ecrec-server``: run one federation on Flower's deployment engine.

Steps, each failing with one line that names what to fix:

1. read ``server.toml`` and check everything that can be checked before any
   process starts (certificates chain to the CA, node keys are EC/NIST, the
   validation shard passes the data contract, the run folder is fresh or
   resumable, the port is free);
2. start ``flower-superlink`` (TLS, node authentication, on-disk state) and
   wait until its Control API answers;
3. register every merchant's public key;
4. wait until enough merchants are online (``federation.min-clients``);
5. submit the ecrec app (``flwr run``) and follow the run: its status from the
   SuperLink, progress from the run folder's ``metrics.jsonl``;
6. stop everything it started and print what it wrote where.

The server never sees merchants' data or budgets; it only learns node public
keys (to authenticate them) and, with SecAgg+, the sum of their updates.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from ecrec.certs import check_node_public_key
from ecrec.config import RunConfig
from ecrec.deploy.flower import (
    FLOWER_ENV,
    FlowerCli,
    FlowerError,
    superexec_argv,
    superlink_argv,
    write_run_config,
    write_secret,
)
from ecrec.deploy.preflight import check_before_start, resolve_run_config, run_config_values
from ecrec.deploy.processes import Child, Interrupted, Supervisor
from ecrec.deploy.settings import ServerSettings, load_settings
from ecrec.errors import ConfigError, EcrecError
from ecrec.runfolder import RunFolder, atomic_write_json, format_round_line

#: SecAgg+ needs an upper bound on any node's example count and the server
#: cannot see the nodes' data, so deployments use this unless configured.
T = TypeVar("T")


class RunFailedError(EcrecError):
    """The federation started but did not complete every round."""

    exit_code = 1


# --------------------------------------------------------------------------- running


@dataclass
class ServerResult:
    run_id: str
    run_dir: Path
    rounds: list[dict[str, Any]]
    privacy: dict[str, Any]
    seconds: float
    log_path: Path
    database: Path
    registered: int


def _startup_failure(child: Child, log_path: Path) -> str:
    interesting = [
        ln for ln in child.tail(40) if "ERROR" in ln or "Error" in ln or "Exit Code" in ln
    ]
    detail = interesting[-1].strip() if interesting else (child.tail(1) or ["no output"])[0]
    return (
        f"flower-superlink exited (code {child.poll()}) during start-up: {detail} (log: {log_path})"
    )


def run_server(
    settings: ServerSettings,
    *,
    resume: bool = False,
    console: Console | None = None,
    status_interval: float = 15.0,
) -> ServerResult:
    """Run the whole federation; raises an :class:`EcrecError` on any failure."""
    console = console or Console(stderr=True, soft_wrap=True)
    started = time.monotonic()
    config = resolve_run_config(settings)
    start_round = check_before_start(settings, config, resume=resume)
    settings.database.parent.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = settings.log_dir / "superlink.log"

    supervisor = Supervisor("ecrec-server")
    env = supervisor.child_env(FLOWER_ENV)
    run_id = ""
    registered = 0
    flwr: FlowerCli | None = None
    with (
        tempfile.TemporaryDirectory(prefix="ecrec-server-") as scratch,
        supervisor.handle_signals(),
    ):
        try:
            secret = write_secret(Path(scratch) / "superexec.secret")
            superlink = supervisor.start(
                "flower-superlink",
                superlink_argv(
                    settings.listen,
                    tls=settings.tls,
                    database=settings.database,
                    node_auth=settings.tls is not None,
                    superexec_secret=secret,
                ),
                env=env,
                log_path=log_path,
            )
            flwr = FlowerCli(
                Path(scratch) / "flwr-home",
                address=settings.connect,
                ca_cert=settings.tls.ca_cert if settings.tls else None,
                env=supervisor.child_env(FLOWER_ENV),
            )
            with console.status(f"starting the SuperLink on {settings.listen}..."):
                _wait_superlink(flwr, superlink, log_path, settings.startup_timeout)
            supervisor.start(
                "flower-superexec",
                superexec_argv(
                    settings.connect,
                    ca=settings.tls.ca_cert if settings.tls else None,
                    secret=secret,
                ),
                env=env,
                log_path=settings.log_dir / "superexec.log",
            )
            mode = "TLS, node authentication on" if settings.tls else "NO TLS, no node auth"
            console.print(f"SuperLink listening on {settings.listen} ({mode}); log: {log_path}")
            if settings.tls is None:
                console.print(
                    "[bold red]warning:[/] insecure = true: traffic is unencrypted and any "
                    "node may join; use only on a trusted test network"
                )

            registered = _register_nodes(flwr, settings, console)
            _wait_for_nodes(
                flwr, superlink, config.federation.min_clients, settings, console, log_path
            )

            overrides = write_run_config(
                Path(scratch) / "run-config.toml", run_config_values(settings, resume=resume)
            )
            run_id = flwr.run(settings.app_dir, run_config=overrides)
            console.print(
                f"run {run_id} submitted: rounds {start_round}..{config.federation.rounds}"
                + (" (resumed)" if resume else "")
            )
            _follow_run(
                flwr,
                superlink,
                run_id,
                config,
                settings,
                start_round=start_round,
                console=console,
                log_path=log_path,
                status_interval=status_interval,
            )
        except Interrupted as stop:
            if flwr is not None and run_id:
                with contextlib.suppress(EcrecError):
                    flwr.stop(run_id)
            if run_id:
                error = RunFailedError(
                    f"stopped by {stop.name}; {settings.run_dir} keeps every completed round "
                    "(continue with --resume)"
                )
            else:
                error = RunFailedError(f"stopped by {stop.name} before the run started")
            error.exit_code = stop.exit_code
            raise error from None
        except OSError as err:
            raise EcrecError(str(err)) from None
        with console.status("stopping the SuperLink..."):
            supervisor.stop_all()

    run = RunFolder(settings.run_dir)
    privacy = json.loads(run.privacy_path.read_text("utf-8")) if run.privacy_path.exists() else {}
    return ServerResult(
        run_id=run_id,
        run_dir=settings.run_dir,
        rounds=run.read_metrics(),
        privacy=privacy,
        seconds=time.monotonic() - started,
        log_path=log_path,
        database=settings.database,
        registered=registered,
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


def _follow_run(
    flwr: FlowerCli,
    superlink: Child,
    run_id: str,
    config: RunConfig,
    settings: ServerSettings,
    *,
    start_round: int,
    console: Console,
    log_path: Path,
    status_interval: float,
) -> None:
    """Wait for the run to finish, printing each round as the ServerApp records it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    alive = _alive_check(superlink, log_path)
    run = RunFolder(settings.run_dir)
    wanted = set(range(start_round, config.federation.rounds + 1))
    if start_round == 1:
        wanted.add(0)
    seen: set[int] = set()
    deadline = time.monotonic() + settings.run_timeout if settings.run_timeout else math.inf
    status = "pending"
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} evaluations"),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task(f"run {run_id}", total=len(wanted))
    info: dict[str, Any] = {}
    next_status = 0.0
    last_mtime = 0.0
    with progress:
        while True:
            alive()
            mtime = _mtime(run.metrics_path)
            if mtime != last_mtime:
                with contextlib.suppress(EcrecError):  # a record being rewritten; next poll
                    for record in run.read_metrics():
                        number = int(record.get("round", -1))
                        if number in wanted and number not in seen:
                            seen.add(number)
                            progress.advance(task)
                            progress.console.print(format_round_line(record, k=config.evaluation.k))
                    last_mtime = mtime
            # `flwr ls` costs a Python start-up (~1 s of CPU, which the nodes need too):
            # ask often only once every round is recorded and the end is near.
            if time.monotonic() >= next_status:
                info = _retrying(lambda: flwr.run_info(run_id), alive)
                status = str(info.get("status", ""))
                progress.update(task, description=f"run {run_id} ({status})")
                if status.startswith("finished"):
                    break
                near_end = seen >= wanted
                next_status = time.monotonic() + (1.0 if near_end else status_interval)
            if time.monotonic() > deadline:
                with contextlib.suppress(EcrecError):
                    flwr.stop(run_id)
                raise RunFailedError(
                    f"run {run_id} did not finish within server.run-timeout="
                    f"{settings.run_timeout:.0f} s; {settings.run_dir} keeps every completed "
                    "round (continue with --resume)"
                )
            time.sleep(1.0)
    records = {int(r.get("round", -1)) for r in run.read_metrics()}
    missing = sorted(wanted - records)
    if status != "finished:completed" or missing:
        details = str(info.get("status-details") or "")
        reason = f" ({details})" if details and details != "N/A" else ""
        what = (
            f"round {missing[0]} was not recorded" if missing else "the ServerApp did not complete"
        )
        failure = run.read_failure()
        if failure:  # the ServerApp's own message; Flower's status repeats it
            what, reason = failure, ""
        raise RunFailedError(
            f"run {run_id} ended as {status}{reason}: {what}; see {log_path}; "
            f"{settings.run_dir} keeps every completed round (fix, then --resume)"
        )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def summary_lines(result: ServerResult, *, k: int = 10) -> list[str]:
    """What the run wrote where, for the end of ``ecrec-server``'s output."""
    rounds = sorted(int(r["round"]) for r in result.rounds)
    ckpts = len(list((result.run_dir / "checkpoints").glob("round_*.npz")))
    lines = [
        f"run {result.run_id} finished in {result.seconds:.0f} s",
        f"  run folder: {result.run_dir}",
        "    config.toml, metrics.jsonl (rounds "
        + (f"{rounds[0]}-{rounds[-1]}" if rounds else "none")
        + f"), privacy.json, checkpoints/ ({ckpts} checkpoint(s))",
    ]
    if result.rounds:
        last = max(result.rounds, key=lambda r: r["round"])
        lines.append(f"  final model: {format_round_line(last, k=k)}")
    merchants = (result.privacy or {}).get("merchants", {})
    for mid, entry in sorted(merchants.items()):
        spent = entry.get("epsilon_spent")  # only if the merchant's policy discloses it
        shown = (
            f"ε spent {spent:.3f} ({entry.get('accountant')}, per {entry.get('unit')})"
            if spent is not None
            else "ε not disclosed (see the merchant's own ledger)"
        )
        trained = sum(1 for r in entry.get("rounds", []) if r.get("trained"))
        lines.append(
            f"  privacy {mid}: {shown}; trained {trained} round(s), declined "
            f"{len(entry.get('declined_rounds', []))} ({entry.get('status', '?')})"
        )
    lines.append(f"  SuperLink log: {result.log_path}")
    lines.append(
        f"  SuperLink state: {result.database} ({result.registered} node key(s); "
        "keep it for --resume)"
    )
    return lines


__all__ = [
    "RunFailedError",
    "ServerResult",
    "ServerSettings",
    "check_before_start",
    "load_settings",
    "resolve_run_config",
    "run_server",
    "summary_lines",
]
