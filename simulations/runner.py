"""``ecrec simulate``: N merchants on one machine with Flower's simulation engine.

The same ServerApp/ClientApp code as a deployment runs here; only the
transport differs (in-process Ray actors instead of SuperLink/SuperNodes).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ecrec.config import RunConfig
from ecrec.data.io import load_data_dir, read_impressions
from ecrec.data.schema import MERCHANT_FILE_PATTERN, VALIDATION_FILE
from ecrec.data.synth import SynthConfig, synthesize, write_marketplace
from ecrec.errors import EcrecError
from ecrec.node import MerchantNode
from ecrec.runfolder import RunFolder, format_round_line


@dataclass
class SimulationSummary:
    run_dir: Path
    rounds: list[dict[str, Any]]
    seconds: float


def prepare_data(config: RunConfig, run: RunFolder) -> Path:
    """The data folder: the configured one, or a synthetic marketplace in the run folder."""
    if config.data.dir:
        return Path(config.data.dir)
    data_dir = run.path / "data"
    if not (data_dir / VALIDATION_FILE).exists():
        marketplace = synthesize(
            SynthConfig(
                merchants=config.data.merchants,
                queries_per_merchant=config.data.queries_per_merchant,
                candidates_per_query=config.data.candidates_per_query,
                validation_queries=config.data.validation_queries,
                seed=config.data.seed,
            )
        )
        # Our own folder: a half-written marketplace from an interrupted run is replaced.
        write_marketplace(marketplace, data_dir, overwrite=True)
    return data_dir


def _limit_threads(cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(cpus)))


def simulate(
    config: RunConfig,
    *,
    out: Path,
    resume: bool = False,
    merchant_budgets: Mapping[str, float] | None = None,
    console: Console | None = None,
    node_class: type[MerchantNode] = MerchantNode,
) -> SimulationSummary:
    """Run the federation in-process and return what it wrote.

    ``node_class`` lets callers extend what a node does (e.g. record its
    updates for an audit); it must be picklable by Ray.
    """
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from ecrec.federation.client import make_client_app
    from ecrec.federation.server import plan_server_run, run_federation

    console = console or Console(stderr=True)
    started = time.perf_counter()
    run = RunFolder(out)
    if resume and run.read_server_state() is None:
        raise EcrecError(f"{out}: nothing to resume (no checkpoints/server_state.json)")
    with console.status("preparing data and the server's ranker..."):
        data_dir = prepare_data(config, run)
        merchants, validation = load_data_dir(data_dir)
        merchant_ids = sorted(merchants)
        if config.federation.max_weight <= 0:  # auto: the largest merchant's examples
            config = config.replace(
                "federation", max_weight=float(max(len(f) for f in merchants.values()))
            )
        if config.federation.min_clients > len(merchant_ids):
            config = config.replace("federation", min_clients=len(merchant_ids))
        unknown = sorted(set(merchant_budgets or {}) - set(merchant_ids))
        if unknown:
            raise EcrecError(f"--merchant-budget: unknown merchant {unknown[0]!r}")
        plan = plan_server_run(config, run=run, validation=validation, resume=resume, on_round=None)
    start_round = plan.start_round

    rounds_to_run = config.federation.rounds - start_round + 1
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} evaluations"),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task("federated rounds", total=rounds_to_run + (start_round == 1))

    def on_round(record: dict[str, Any]) -> None:
        progress.advance(task)
        progress.console.print(format_round_line(record, k=config.evaluation.k))

    plan.recorder.on_round = on_round
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Any, context: Any) -> None:
        run_federation(grid, context, plan=plan)

    ledger_dir = Path(config.privacy.ledger_dir or run.path / "ledgers")
    budgets = dict(merchant_budgets or {})
    cpus = config.federation.client_cpus
    sim_config = config

    def node_factory(context: Any) -> MerchantNode:
        _limit_threads(cpus)
        merchant_id = merchant_ids[int(context.node_config["partition-id"])]
        frame = read_impressions(data_dir / MERCHANT_FILE_PATTERN.format(merchant_id=merchant_id))
        return node_class(
            merchant_id=merchant_id,
            frame=frame,
            config=sim_config,
            ledger_path=ledger_dir / f"{merchant_id}.json",
            budget_epsilon=budgets.get(merchant_id),
        )

    client_app = make_client_app(node_factory)
    backend_config: dict[str, Any] = {
        "client_resources": {"num_cpus": cpus, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": max(int(cpus), os.cpu_count() or 1),
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        },
    }
    _quiet_logs()
    with progress:
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=len(merchant_ids),
            backend_config=backend_config,
        )
    records = run.read_metrics()
    done_rounds = {r["round"] for r in records}
    missing = [r for r in range(1, config.federation.rounds + 1) if r not in done_rounds]
    if missing:
        raise EcrecError(
            f"simulation stopped before round {missing[0]} finished; the run folder {out} "
            "keeps every completed round (see the log above, then --resume)"
        )
    return SimulationSummary(run_dir=out, rounds=records, seconds=time.perf_counter() - started)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _quiet_logs() -> None:
    """Keep the console for ecrec's progress: Flower's deprecation notice for
    ``run_simulation`` and Ray's start-up chatter are not actionable here."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from flwr.common.logger import FLOWER_LOGGER

    FLOWER_LOGGER.setLevel(logging.ERROR)
    logging.getLogger("ray").setLevel(logging.ERROR)


def rounds_table(summary: SimulationSummary, *, k: int) -> Table:
    """The final per-round table: quality, privacy spent, traffic and time."""
    table = Table(title=f"ecrec simulation: {summary.run_dir}")
    for column in (
        "round",
        f"ndcg@{k}",
        f"mrr@{k}",
        "auc",
        "ε per merchant",
        "declined",
        "KB up",
        "wall s",
    ):
        table.add_column(column, justify="right")
    for record in summary.rounds:
        eps = " ".join(f"{m}:{v:.2f}" for m, v in sorted(record.get("epsilon", {}).items()) if v)
        table.add_row(
            str(record["round"]),
            _fmt(record.get(f"ndcg@{k}")),
            _fmt(record.get(f"mrr@{k}")),
            _fmt(record.get("auc")),
            eps or "-",
            ",".join(record.get("declined", [])) or "-",
            f"{record.get('bytes_up', 0) / 1024:.0f}",
            f"{record.get('wall_seconds', 0):.1f}",
        )
    return table


__all__ = ["SimulationSummary", "rounds_table", "simulate"]
