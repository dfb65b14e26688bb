"""Following a submitted run: each round as the ServerApp records it in ``metrics.jsonl``,
the run's status from the SuperLink, and one line naming the cause when it fails."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ecrec.config import RunConfig
from ecrec.deploy.flower import FlowerCli
from ecrec.deploy.processes import Child
from ecrec.deploy.server_superlink import RunFailedError, _alive_check, _retrying
from ecrec.deploy.settings import ServerSettings
from ecrec.errors import EcrecError
from ecrec.runfolder import RunFolder, format_round_line


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
