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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from ecrec.deploy.flower import (
    FLOWER_ENV,
    FlowerCli,
    superexec_argv,
    superlink_argv,
    write_run_config,
    write_secret,
)
from ecrec.deploy.preflight import check_before_start, resolve_run_config, run_config_values
from ecrec.deploy.processes import Interrupted, Supervisor
from ecrec.deploy.server_follow import _follow_run
from ecrec.deploy.server_superlink import (
    RunFailedError,
    _register_nodes,
    _wait_for_nodes,
    _wait_superlink,
)
from ecrec.deploy.settings import ServerSettings, load_settings
from ecrec.errors import EcrecError
from ecrec.runfolder import RunFolder, format_round_line


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
