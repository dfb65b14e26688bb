"""Run the ecrec ServerApp and ClientApp on Flower's simulation engine (Ray), in-process.

The apps are the installed components that pyproject.toml's ``[tool.flwr.app.components]``
names -- the same objects ``flwr run`` and the deployment engine load -- imported by
name here, as Flower does, so the library never imports an app module statically.

Flower's public ``run_simulation`` cannot hand the ServerApp a run config, so this
calls the function it wraps (``flwr.simulation.run_simulation._run_simulation``,
flwr pinned at 1.42.0) with a server context that carries one.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecrec.federation.client import CLIENT_COMPONENT, SIMULATION_NODES_ENV
from ecrec.federation.protocol import SIMULATION_NODES
from ecrec.federation.server import SERVER_COMPONENT

if TYPE_CHECKING:
    from flwr.client import ClientApp
    from rich.console import Console

    from ecrec.config import RunConfig
    from ecrec.node.policy import NodePolicy


def load_component(reference: str) -> Any:
    """``"package.module:attribute"`` -> the object (Flower's component reference form)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def quiet_logs() -> None:
    """Keep the console for ecrec's progress: Flower's deprecation notices and Ray's
    start-up chatter are not actionable here."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from flwr.common.logger import FLOWER_LOGGER

    FLOWER_LOGGER.setLevel(logging.ERROR)
    if not any(isinstance(f, _DeclineFilter) for f in FLOWER_LOGGER.filters):
        FLOWER_LOGGER.addFilter(_DeclineFilter())
    logging.getLogger("ray").setLevel(logging.ERROR)


class _DeclineFilter(logging.Filter):
    """A node's decline is an answer, reported on the round line; not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ecrec.federation.protocol import DECLINE_TAG

        return DECLINE_TAG not in record.getMessage()


def run_on_simulation_engine(
    *,
    run_config: dict[str, Any],
    num_nodes: int,
    nodes_file: Path,
    client_cpus: float = 1.0,
    client_app: ClientApp | None = None,
) -> None:
    """Run one federation on the simulation engine; raises what the ServerApp raised.

    ``client_app``: a scenario's ClientApp (the ecrec one with extra mods, see
    :func:`ecrec.federation.client.make_client_app`); default: the installed one.
    """
    from flwr.app import Context, RecordDict
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.telemetry import EventType

    server_app = load_component(SERVER_COMPONENT)
    client_app = client_app or load_component(CLIENT_COMPONENT)
    os.environ[SIMULATION_NODES_ENV] = str(nodes_file)  # Ray workers inherit the environment
    backend_config: dict[str, Any] = {
        "client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": max(int(client_cpus), os.cpu_count() or 1),
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        },
    }
    quiet_logs()
    context = Context(
        run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config)
    )
    try:
        _run_simulation(
            num_supernodes=num_nodes,
            exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
            client_app=client_app,
            server_app=server_app,
            backend_config=backend_config,
            server_app_context=context,
        )
    finally:
        os.environ.pop(SIMULATION_NODES_ENV, None)


# --------------------------------------------------------------------------- ecrec simulate


@dataclass
class SimulationSummary:
    run_dir: Path
    rounds: list[dict[str, Any]]
    seconds: float
    privacy: dict[str, dict[str, Any]]  # merchant -> its ledger's summary (local: simulation)


def ledger_summaries(nodes_file: Path) -> dict[str, dict[str, Any]]:
    """Each simulated merchant's own ledger summary (the merchant's view, not the server's)."""
    from ecrec.privacy.ledger import PrivacyLedger
    from ecrec.simulation import simulated_nodes

    out: dict[str, dict[str, Any]] = {}
    for node in simulated_nodes(nodes_file):
        ledger = PrivacyLedger.load(
            node.ledger_path, key_file=node.key_file, anchor_path=node.anchor_path
        )
        out[ledger.merchant_id] = ledger.summary()
    return out


def simulate(
    config: RunConfig,
    *,
    out: Path,
    resume: bool = False,
    node_policy: NodePolicy | Path | None = None,
    merchant_budgets: Mapping[str, float] | None = None,
    console: Console | None = None,
    client_app: ClientApp | None = None,
) -> SimulationSummary:
    """``ecrec simulate``: play every merchant's part, then run the apps in-process.

    ``client_app``: a scenario's ClientApp (``ecrec_simulations``); default: the
    installed ecrec ClientApp.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ecrec.errors import EcrecError
    from ecrec.runfolder import RunFolder, format_round_line
    from ecrec.simulation import prepare_simulation, simulated_nodes

    console = console or Console(stderr=True)
    started = time.perf_counter()
    run = RunFolder(out)
    if resume and run.read_server_state() is None:
        raise EcrecError(f"{out}: nothing to resume (no checkpoints/server_state.json)")
    if not resume and run.metrics_path.exists():
        raise EcrecError(f"{out}: already holds a run; resume it or choose a new folder")
    with console.status("preparing data and each merchant's node..."):
        config, nodes_file = prepare_simulation(
            config, out, policy=node_policy, budgets=merchant_budgets, resume=resume
        )
    run.create()
    run.write_config(config.to_toml())
    n_nodes = len(simulated_nodes(nodes_file))
    done = {int(r["round"]) for r in run.read_metrics()}
    wanted = [r for r in range(0, config.federation.rounds + 1) if r not in done]
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} evaluations"),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task("federated rounds", total=len(wanted))
    stop = threading.Event()

    def follow() -> None:  # the ServerApp runs in Flower's thread; we watch its run folder
        seen = set(done)
        while not stop.wait(0.5):
            try:
                records = run.read_metrics()
            except EcrecError:  # a record being rewritten: next poll
                continue
            for record in records:
                number = int(record.get("round", -1))
                if number not in seen:
                    seen.add(number)
                    progress.advance(task)
                    progress.console.print(format_round_line(record, k=config.evaluation.k))

    watcher = threading.Thread(target=follow, daemon=True)
    run_config = {
        "config-file": str(run.config_path),
        "run-dir": str(out),
        "resume": resume,
        SIMULATION_NODES: str(nodes_file),
    }
    with progress:
        watcher.start()
        try:
            run_on_simulation_engine(
                run_config=run_config,
                num_nodes=n_nodes,
                nodes_file=nodes_file,
                client_cpus=config.federation.client_cpus,
                client_app=client_app,
            )
        finally:
            stop.set()
            watcher.join()
    records = run.read_metrics()
    missing = [
        r for r in range(1, config.federation.rounds + 1) if r not in {x["round"] for x in records}
    ]
    if missing:
        raise EcrecError(
            f"simulation stopped before round {missing[0]} finished; the run folder {out} "
            "keeps every completed round (see the log above, then --resume)"
        )
    return SimulationSummary(
        run_dir=out,
        rounds=records,
        seconds=time.perf_counter() - started,
        privacy=ledger_summaries(nodes_file),
    )


__all__ = [
    "SimulationSummary",
    "ledger_summaries",
    "load_component",
    "quiet_logs",
    "run_on_simulation_engine",
    "simulate",
]
