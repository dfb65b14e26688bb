"""Flower server adapter: strategy, SecAgg+ workflow and the resumable round loop.

Aggregation is Flower's (FedAvg / FedProx / FedAdam, the SecAgg+ workflow, the
client-side-clipping DP wrapper) on the legacy stack, the one where SecAgg+ works
in Flower 1.42 (ENVIRONMENT.md). Hand-written, each for a reason Flower does not
cover:

* the round loop, because ``DefaultWorkflow`` cannot resume at round k with the
  same numbering;
* :class:`GuardedSecAggPlusWorkflow`, which refuses to unmask a sum of fewer than
  ``federation.min-trainers`` updates (Flower unmasks whatever reaches its threshold);
* :class:`RoundGrid`, which bounds plain rounds by a timeout (Flower's default fit
  workflow waits for ever) and keeps each node's error replies, so a declined round
  can say who declined and why.

Everything done with the aggregated adapter -- evaluation, audit, explanations,
artefacts -- is the Flower-free :class:`~ecrec.pipeline.RoundPipeline`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord
from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.logger import FLOWER_LOGGER
from flwr.compat.common import recorddict_compat as compat
from flwr.server import Grid, LegacyContext, ServerConfig
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.default_workflows import default_fit_workflow

from ecrec.config import RunConfig
from ecrec.errors import EcrecError
from ecrec.federation.protocol import (
    ECREC_CONFIG,
    SERVER_ROUND,
    SIMULATION_NODES,
)
from ecrec.federation.rounds import (
    ALREADY_SPENT_SETTING,
    RoundFailedError,
    RoundGrid,
    RoundLog,
    _all_spent,
)
from ecrec.federation.screening import screen_updates
from ecrec.federation.strategies import (
    make_strategy,
    restore_strategy,
    strategy_arrays,
)
from ecrec.pipeline import RoundPipeline
from ecrec.runfolder import RunFolder

log = logging.getLogger("ecrec.server")
SERVER_COMPONENT = "ecrec_server.server_app:app"


class GuardedSecAggPlusWorkflow(SecAggPlusWorkflow):
    """SecAgg+ that will not unmask a sum of fewer than ``min_trainers`` updates."""

    def __init__(
        self,
        *,
        min_trainers: int,
        on_refuse: Callable[[str], None],
        on_halt: Callable[[str], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.min_trainers = min_trainers
        self.on_refuse = on_refuse
        self.on_halt = on_halt

    def setup_stage(self, grid: Any, context: Any, state: Any) -> bool:
        return self._went_on(super().setup_stage(grid, context, state), "setup", state)

    def share_keys_stage(self, grid: Any, context: Any, state: Any) -> bool:
        return self._went_on(super().share_keys_stage(grid, context, state), "share-keys", state)

    def _went_on(self, ok: bool, stage: str, state: Any) -> bool:
        """A stage that lost nodes below the reconstruction threshold halts SecAgg+ before
        anyone trains; ``on_halt`` decides whether that is a skipped round (nodes died) or
        a failed run (they declined). With no survivor at all the round fails."""
        active = len(getattr(state, "active_node_ids", ()) or ())
        if not ok and active:
            few = f" and federation.min-trainers={self.min_trainers}"
            self.on_halt(
                f"only {active} merchant(s) remained after the SecAgg+ {stage} stage, fewer "
                f"than its reconstruction threshold of {state.threshold}"
                + (few if active < self.min_trainers else "")
                + ": round not aggregated"
            )
        return ok

    def unmask_stage(self, grid: Any, context: Any, state: Any) -> bool:
        active = len(state.active_node_ids)
        if active < self.min_trainers:
            self.on_refuse(
                f"only {active} merchant(s) sent a masked update, fewer than "
                f"federation.min-trainers={self.min_trainers}: the sum is not unmasked"
            )
            return False
        unmasked = super().unmask_stage(grid, context, state)
        if not unmasked:
            # A merchant sent its masked update and then left: too few share-holders
            # answered, so the sum cannot be unmasked (nothing about it is revealed).
            self.on_halt(
                f"only {len(state.active_node_ids)} merchant(s) answered the SecAgg+ unmask "
                f"stage, fewer than its reconstruction threshold of {state.threshold} (a "
                "merchant left after sending its masked update): the sum cannot be unmasked, "
                "round not aggregated"
            )
        return unmasked


# --------------------------------------------------------------------------- the run


@dataclass
class ServerPlan:
    """Everything the round loop needs, prepared before Flower starts."""

    config: RunConfig
    run: RunFolder
    pipeline: RoundPipeline
    initial: list[np.ndarray]
    start_round: int
    rounds: dict[int, RoundLog]
    strategy_arrays: dict[str, np.ndarray]
    simulation_nodes: Path | None = None


def plan_server_run(
    config: RunConfig,
    *,
    run: RunFolder,
    validation: Any,
    resume: bool,
    simulation_nodes: Path | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> ServerPlan:
    """Open the run folder (fresh or resumed), build the pipeline and initial model.

    A fresh run refuses a folder that already holds one, so nothing is lost.
    """
    latest = run.latest() if resume else None
    if resume and latest is None:
        raise EcrecError(f"{run.path}: nothing to resume (no checkpoints/server_state.json)")
    if not resume and run.metrics_path.exists():
        raise EcrecError(f"{run.path}: already holds a run; resume it or choose a new folder")
    run.create()
    run.write_config(config.to_toml())
    pipeline = RoundPipeline(config=config, validation=validation, run=run, on_round=on_round)
    names = pipeline.names
    initial = list(pipeline.initial_state().values())
    start_round = 1
    rounds: dict[int, RoundLog] = {}
    arrays: dict[str, np.ndarray] = {}
    if latest is not None:
        done, state, _ = latest
        if list(state) != names:
            raise EcrecError(f"{run.path}: checkpoint does not match the configured ranker")
        if done >= config.federation.rounds:
            raise EcrecError(
                f"{run.path}: all {config.federation.rounds} rounds already done; "
                "raise the number of rounds to continue"
            )
        start_round = done + 1
        initial = list(state.values())
        arrays = run.load_strategy_arrays(done)
    return ServerPlan(
        config=config,
        run=run,
        pipeline=pipeline,
        initial=initial,
        start_round=start_round,
        rounds=rounds,
        strategy_arrays=arrays,
        simulation_nodes=simulation_nodes,
    )


def privacy_summary(config: RunConfig, history: Mapping[str, Any]) -> dict[str, Any]:
    """``privacy.json``: what each merchant's node told the server, round by round."""
    return {
        "private": config.train.dp,
        "requested": {
            "budget_epsilon": config.privacy.budget_epsilon,
            "delta": config.privacy.delta,
            "accountant": config.privacy.accountant,
            "unit": config.privacy.unit,
        },
        "merchants": history,
    }


def _update_history(history: dict[str, Any], round_log: RoundLog) -> None:
    for merchant, disclosed in round_log.trained.items():
        entry = history.setdefault(merchant, {"rounds": [], "declined_rounds": []})
        row = {"round": round_log.server_round, "trained": True}
        for key in ("epsilon-spent", "epsilon-remaining", "accountant", "unit"):
            if key in disclosed:
                row[key.replace("-", "_")] = disclosed[key]
        entry["rounds"].append(row)
        entry["status"] = "active"
        if "epsilon_spent" in row:
            entry["epsilon_spent"] = row["epsilon_spent"]
            entry["accountant"] = row.get("accountant")
            entry["unit"] = row.get("unit")
    for merchant, reason in round_log.declined_by().items():
        entry = history.setdefault(merchant, {"rounds": [], "declined_rounds": []})
        entry["rounds"].append(
            {"round": round_log.server_round, "trained": False, "reason": reason}
        )
        entry["declined_rounds"].append(round_log.server_round)
        entry["status"] = "declining"


def _current(legacy: LegacyContext) -> dict[str, np.ndarray] | None:
    record = legacy.state.array_records.get(MAIN_PARAMS_RECORD)
    if record is None:
        return None
    return compat.arrayrecord_to_parameters(record, keep_input=True)  # type: ignore[return-value]


def run_federation(grid: Grid, context: Context, *, plan: ServerPlan, quiet: bool = True) -> None:
    """Run rounds ``plan.start_round..rounds`` (round 0 is evaluated when fresh)."""
    config, run, pipeline = plan.config, plan.run, plan.pipeline
    fed = config.federation
    if quiet:
        FLOWER_LOGGER.setLevel(logging.WARNING)
    names = pipeline.names
    request = config.to_toml()

    def fit_config(server_round: int) -> dict[str, Any]:
        values: dict[str, Any] = {SERVER_ROUND: server_round, ECREC_CONFIG: request}
        if plan.simulation_nodes is not None:
            values[SIMULATION_NODES] = str(plan.simulation_nodes)
        return values

    strategy = make_strategy(
        config, initial=plan.initial, rounds=plan.rounds, fit_config=fit_config
    )
    restore_strategy(strategy, plan.strategy_arrays)
    legacy = LegacyContext(
        context=context, config=ServerConfig(num_rounds=fed.rounds), strategy=strategy
    )
    round_grid = RoundGrid(grid, timeout=fed.timeout)

    def refuse(reason: str) -> None:
        if round_grid.current is not None:
            round_grid.current.skipped = reason

    def halt(reason: str) -> None:
        if round_grid.current is not None:
            round_grid.current.halted(reason)

    fit_workflow: Callable[[Any, LegacyContext], Any] = default_fit_workflow
    if fed.secagg:
        fit_workflow = GuardedSecAggPlusWorkflow(
            min_trainers=fed.min_trainers,
            on_refuse=refuse,
            on_halt=halt,
            num_shares=fed.num_shares,
            reconstruction_threshold=fed.reconstruction_threshold,
            max_weight=fed.secagg_max_weight,
            clipping_range=fed.clipping_range,
            quantization_range=fed.quantization_range,
            timeout=fed.timeout,
        )
    history: dict[str, Any] = {}
    previous = run.read_server_state() if plan.start_round > 1 else None
    if previous:
        history = dict(previous.get("privacy", {}))
    legacy.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters(plan.initial), True
    )
    if plan.start_round == 1:
        pipeline.after_round(
            0,
            dict(zip(names, plan.initial, strict=True)),
            federation={"clients": 0, "trained": [], "declined": []},
            privacy=privacy_summary(config, history),
            server_state={"privacy": history},
        )
    thread, stop, ready = start_update_client_manager_thread(round_grid, legacy.client_manager)
    state = dict(zip(names, plan.initial, strict=True))
    last = plan.start_round - 1
    try:
        ready.wait()
        cfg = ConfigRecord()
        cfg[Key.START_TIME] = time.time()
        legacy.state.config_records[MAIN_CONFIGS_RECORD] = cfg
        for server_round in range(plan.start_round, fed.rounds + 1):
            cfg[Key.CURRENT_ROUND] = server_round
            round_log = plan.rounds[server_round] = RoundLog(server_round)
            round_grid.current = round_log
            fit_workflow(round_grid, legacy)
            round_grid.current = None
            if not round_log.aggregated:
                few = len(round_log.contributors) < fed.min_trainers
                if round_log.contributors and few and not round_log.skipped:
                    round_log.skipped = (
                        f"only {len(round_log.contributors)} merchant(s) trained, fewer than "
                        f"federation.min-trainers={fed.min_trainers}: round not aggregated"
                    )
                if not round_log.trained and not round_log.skipped and _all_spent(round_log):
                    round_log.skipped = (
                        f"every merchant that answered had already spent round {server_round} "
                        "in its ledger (a resumed run re-asks a round whose updates were lost; "
                        "a node never trains a round number twice): not aggregated"
                    )
                if not round_log.trained and not round_log.skipped:
                    raise RoundFailedError(
                        f"round {server_round} failed: no merchant update was aggregated "
                        f"({round_log.why_nothing()}); rounds up to {server_round - 1} are "
                        f"saved in {run.path}, use --resume"
                    )
                round_log.skipped = round_log.skipped or round_log.why_nothing()
                log.warning("round %s skipped: %s", server_round, round_log.skipped)
            params = _current(legacy)
            if round_log.aggregated and params is not None:
                arrays = parameters_to_ndarrays(params)  # type: ignore[arg-type]
                state = dict(zip(names, (np.asarray(a, np.float32) for a in arrays), strict=True))
            _update_history(history, round_log)
            pipeline.after_round(
                server_round,
                state,
                federation=round_log.record(),
                privacy=privacy_summary(config, history),
                server_state={"privacy": history},
                strategy_arrays=strategy_arrays(strategy),
            )
            last = server_round
    finally:
        round_grid.current = None
        stop.set()
        thread.join()
    pipeline.finish(last, state)


def is_simulation(grid: Any) -> bool:
    """True on Flower's simulation engine (its grid is in memory)."""
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    inner = getattr(grid, "_grid", grid)
    return isinstance(inner, InMemoryGrid)


def serve(grid: Grid, context: Context) -> None:
    """The ServerApp's main: read the Flower run config, prepare, run every round.

    Run-config keys: the flat overrides of :data:`ecrec.config.RUN_CONFIG_OVERRIDES`
    plus ``config-file``, ``run-dir`` (default ``runs/<timestamp>``),
    ``validation-path`` (default ``<data-dir>/validation.parquet``), ``resume`` and,
    in simulation, ``simulation-nodes``. A bare ``flwr run`` on a simulation
    federation prepares its own simulated merchants (default node policy).
    """
    from ecrec.config import config_from_run_config
    from ecrec.data.io import read_impressions
    from ecrec.data.schema import VALIDATION_FILE

    run_config = dict(context.run_config)
    config = config_from_run_config(run_config)
    run_dir = Path(str(run_config.get("run-dir") or "") or default_run_dir())
    resume = bool(run_config.get("resume", False))
    nodes = str(run_config.get(SIMULATION_NODES) or "")
    nodes_file = Path(nodes) if nodes else None
    if nodes_file is None and is_simulation(grid):
        from ecrec.simulation import prepare_simulation

        config, nodes_file = prepare_simulation(config, run_dir, resume=resume)
    validation_path = str(run_config.get("validation-path") or "")
    if not validation_path:
        if not config.data.dir:
            raise EcrecError("run config: set validation-path (the server's pooled shard)")
        validation_path = str(Path(config.data.dir) / VALIDATION_FILE)
    run = RunFolder(run_dir)
    plan = plan_server_run(
        config,
        run=run,
        validation=read_impressions(validation_path),
        resume=resume,
        simulation_nodes=nodes_file,
    )
    run.clear_failure()
    try:
        run_federation(grid, context, plan=plan)
    except EcrecError as err:
        run.write_failure(str(err))
        raise


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


__all__ = [
    "ALREADY_SPENT_SETTING",
    "SERVER_COMPONENT",
    "GuardedSecAggPlusWorkflow",
    "RoundFailedError",
    "RoundGrid",
    "RoundLog",
    "ServerPlan",
    "default_run_dir",
    "is_simulation",
    "make_strategy",
    "plan_server_run",
    "privacy_summary",
    "restore_strategy",
    "run_federation",
    "screen_updates",
    "serve",
    "strategy_arrays",
]
