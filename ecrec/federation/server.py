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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message
from flwr.common import Context, FitRes, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.logger import FLOWER_LOGGER
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.common.secure_aggregation.secaggplus_constants import Key as SecAggKey
from flwr.compat.common import recorddict_compat as compat
from flwr.server import Grid, LegacyContext, ServerConfig
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    FedAdam,
    FedAvg,
    FedProx,
    Strategy,
)
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.default_workflows import default_fit_workflow

from ecrec.config import RunConfig
from ecrec.errors import EcrecError
from ecrec.federation.protocol import (
    ECREC_CONFIG,
    SERVER_ROUND,
    SIMULATION_NODES,
    Decline,
    parse_decline,
)
from ecrec.federation.screening import screen_updates
from ecrec.pipeline import RoundPipeline
from ecrec.runfolder import RunFolder

log = logging.getLogger("ecrec.server")
SERVER_COMPONENT = "ecrec_server.server_app:app"
#: Strategy attributes that carry state between rounds (FedAdam / FedOpt).
STRATEGY_STATE = ("current_weights", "m_t", "v_t")
#: At most this many failures are spelled out in a round's record (all are counted).
MAX_RECORDED_FAILURES = 50


class RoundFailedError(EcrecError):
    """A round ended without an aggregated update and the run cannot go on."""

    exit_code = 1


# --------------------------------------------------------------------------- what a round saw


@dataclass
class RoundLog:
    """What the server learnt about one round from the nodes' answers."""

    server_round: int
    trained: dict[str, dict[str, Any]] = field(default_factory=dict)  # merchant -> disclosed
    declines: list[Decline] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # failures that were not declines
    rejected: dict[str, str] = field(default_factory=dict)  # plain mode: dropped updates
    contributors: set[int] = field(default_factory=set)  # nodes whose update arrived
    bytes_up: int = 0
    bytes_down: int = 0
    skipped: str | None = None  # why the round was not aggregated, if it was refused
    aggregated: bool = False
    started: float = field(default_factory=time.perf_counter)

    def declined_by(self) -> dict[str, str]:
        return {d.merchant: d.reason for d in self.declines}

    def record(self) -> dict[str, Any]:
        """The round's federation fields in ``metrics.jsonl``."""
        return {
            "clients": len(self.trained) + len(self.declines),
            "trained": sorted(self.trained),
            "declined": sorted(self.declined_by()),
            "decline_reasons": self.declined_by(),
            "failures": len(self.errors),
            "rejected": dict(self.rejected),
            "failure_reasons": [e[:300] for e in self.errors[:MAX_RECORDED_FAILURES]],
            "skipped": self.skipped,
            "epsilon": {
                m: d.get("epsilon-spent") for m, d in self.trained.items() if "epsilon-spent" in d
            },
            "epsilon_accountant": next(
                (d["accountant"] for d in self.trained.values() if "accountant" in d), None
            ),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "wall_seconds": round(time.perf_counter() - self.started, 3),
        }

    def why_nothing(self) -> str:
        parts = [f"{d.merchant}: {d.reason}" for d in self.declines]
        parts += self.errors[:3]
        if self.skipped:
            parts.insert(0, self.skipped)
        return "; ".join(parts) or "no node answered"


#: The setting a node names when it declines a round number its ledger has already
#: spent (``MerchantNode.run_round``): the update of that round was lost, not refused.
ALREADY_SPENT_SETTING = "round"


def _all_spent(round_log: RoundLog) -> bool:
    """True if nodes declined the round and every decline says "already spent".

    Such a round can never be completed (no node trains a round number twice), so
    the run skips it instead of failing every ``--resume`` on it.
    """
    return bool(round_log.declines) and all(
        d.reason.split(":", 1)[0].strip() == ALREADY_SPENT_SETTING for d in round_log.declines
    )


def _is_contribution(msg: Message) -> bool:
    """A node's trained update: a masked vector (SecAgg+) or a plain fit reply's arrays."""
    if msg.has_error():
        return False
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    if configs is not None:
        return SecAggKey.MASKED_PARAMETERS in configs
    return any(len(record) for record in msg.content.array_records.values())


def _message_bytes(msg: Message) -> int:
    """Bytes of arrays and byte strings in a message (what dominates the wire size)."""
    total = 0
    if msg.has_error():
        return 0
    for record in msg.content.array_records.values():
        total += sum(int(np.asarray(a.numpy()).nbytes) for a in record.values())
    for record in msg.content.config_records.values():
        for value in record.values():
            if isinstance(value, bytes):
                total += len(value)
            elif isinstance(value, list):
                total += sum(len(v) for v in value if isinstance(v, bytes))
    return total


class RoundGrid:
    """A Grid that bounds every exchange by a timeout and records what came back."""

    def __init__(self, grid: Grid, *, timeout: float) -> None:
        self._grid = grid
        self.timeout = timeout
        self.current: RoundLog | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        messages = list(messages)
        wait = self.timeout if timeout is None else timeout
        replies = list(self._grid.send_and_receive(messages, timeout=wait))
        if self.current is not None:
            # The grid gave each message its id when it pushed it. A reply names the
            # message it answers; the SuperLink itself answers (as node 1) for a node
            # it found offline, so the node a reply is about is the message's target.
            target = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}

            def about(reply: Message) -> int:
                return target.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)

            # A node that died (or hung) sends nothing; say so, or the round's record
            # would show no failure for a node that was asked and never answered.
            answered = {about(reply) for reply in replies}
            for node_id in sorted({m.metadata.dst_node_id for m in messages} - answered):
                self.current.errors.append(f"node {node_id}: no answer within {wait:g} s")
            self.current.bytes_down += sum(_message_bytes(m) for m in messages)
            for reply in replies:
                self.current.bytes_up += _message_bytes(reply)
                if _is_contribution(reply):
                    self.current.contributors.add(reply.metadata.src_node_id)
                if reply.has_error():
                    reason = str(reply.error.reason)
                    decline = parse_decline(reason)
                    if decline is not None:
                        self.current.declines.append(decline)
                    else:
                        self.current.errors.append(f"node {about(reply)}: {reason[:300]}")
        return replies


class GuardedSecAggPlusWorkflow(SecAggPlusWorkflow):
    """SecAgg+ that will not unmask a sum of fewer than ``min_trainers`` updates."""

    def __init__(
        self, *, min_trainers: int, on_refuse: Callable[[str], None], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.min_trainers = min_trainers
        self.on_refuse = on_refuse

    def unmask_stage(self, grid: Any, context: Any, state: Any) -> bool:
        active = len(state.active_node_ids)
        if active < self.min_trainers:
            self.on_refuse(
                f"only {active} merchant(s) sent a masked update, fewer than "
                f"federation.min-trainers={self.min_trainers}: the sum is not unmasked"
            )
            return False
        return super().unmask_stage(grid, context, state)


# --------------------------------------------------------------------------- strategy


def make_strategy(
    config: RunConfig,
    *,
    initial: list[np.ndarray],
    rounds: dict[int, RoundLog],
    fit_config: Callable[[int], dict[str, Any]],
) -> Strategy:
    """The configured Flower strategy; it records what nodes disclose and refuses to
    aggregate fewer than ``min-trainers`` updates (plain mode checks them first)."""
    fed = config.federation
    base_cls: type[FedAvg] = {"fedavg": FedAvg, "fedprox": FedProx, "fedadam": FedAdam}[
        fed.strategy
    ]

    class RecordingStrategy(base_cls):  # type: ignore[misc, valid-type]
        def aggregate_fit(
            self,
            server_round: int,
            results: list[tuple[ClientProxy, FitRes]],
            failures: list[Any],
        ) -> tuple[Parameters | None, dict[str, Any]]:
            round_log = rounds[server_round]
            if not fed.secagg:
                reference = parameters_to_ndarrays(self._current_parameters)
                results, dropped = screen_updates(
                    results,
                    reference=reference,
                    weighting=fed.weighting,
                    max_weight=fed.max_weight,
                )
                round_log.errors.extend(f"rejected {d}" for d in dropped)
                round_log.rejected.update((d.merchant, d.reason) for d in dropped)
            for proxy, res in results:
                merchant = str(res.metrics.get("merchant", proxy.node_id))
                round_log.trained[merchant] = dict(res.metrics)
            if len(results) < fed.min_trainers:
                round_log.skipped = (
                    f"only {len(results)} merchant(s) trained, fewer than "
                    f"federation.min-trainers={fed.min_trainers}: round not aggregated"
                )
                return None, {}
            aggregated, metrics = super().aggregate_fit(server_round, results, failures)
            if aggregated is not None:
                round_log.aggregated = True
                self._current_parameters = aggregated
            return aggregated, metrics

    kwargs: dict[str, Any] = dict(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=fed.min_clients,
        min_evaluate_clients=0,
        min_available_clients=fed.min_clients,
        on_fit_config_fn=fit_config,
        # Per-node answers are recorded above; Flower's history only needs the count.
        fit_metrics_aggregation_fn=lambda results: {"trained": len(results)},
        initial_parameters=ndarrays_to_parameters(initial),
    )
    if fed.strategy == "fedprox":
        kwargs["proximal_mu"] = fed.proximal_mu
    if fed.strategy == "fedadam":
        kwargs["eta"] = fed.server_learning_rate
    strategy: Strategy = RecordingStrategy(**kwargs)
    strategy._current_parameters = ndarrays_to_parameters(initial)  # type: ignore[attr-defined]
    if fed.client_dp:
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy,
            noise_multiplier=fed.client_noise_multiplier,
            clipping_norm=fed.client_clipping_norm,
            num_sampled_clients=fed.min_clients,
        )
    return strategy


def _inner(strategy: Strategy) -> Strategy:
    return getattr(strategy, "strategy", strategy)  # the DP wrapper keeps the real one inside


def strategy_arrays(strategy: Strategy) -> dict[str, np.ndarray]:
    """The strategy's state between rounds, as named arrays (FedAdam's moments)."""
    inner = _inner(strategy)
    out: dict[str, np.ndarray] = {}
    for attr in STRATEGY_STATE:
        value = getattr(inner, attr, None)
        if isinstance(value, list) and value:
            for i, array in enumerate(value):
                out[f"{attr}.{i}"] = np.asarray(array)
    return out


def restore_strategy(strategy: Strategy, arrays: Mapping[str, np.ndarray]) -> None:
    """Put saved state back, so a resumed FedAdam run continues its moments."""
    inner = _inner(strategy)
    for attr in STRATEGY_STATE:
        items = sorted(
            ((int(k.split(".", 1)[1]), v) for k, v in arrays.items() if k.split(".", 1)[0] == attr),
        )
        if items:
            setattr(inner, attr, [np.asarray(v) for _, v in items])


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

    fit_workflow: Callable[[Any, LegacyContext], Any] = default_fit_workflow
    if fed.secagg:
        fit_workflow = GuardedSecAggPlusWorkflow(
            min_trainers=fed.min_trainers,
            on_refuse=refuse,
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
