"""Flower server adapter: strategy, SecAgg+ workflow, and the round loop.

Aggregation is Flower's (FedAvg / FedProx / FedAdam, SecAgg+ workflow, client
DP wrapper). What Flower's ``DefaultWorkflow`` cannot do is resume at round k
with the same numbering, so :func:`run_federation` drives the same workflow
pieces in its own loop (hand-written for that reason only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from flwr.app import ConfigRecord
from flwr.common import Context, FitRes, Parameters, ndarrays_to_parameters
from flwr.common.logger import FLOWER_LOGGER
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
from flwr.server.workflow.default_workflows import (
    default_centralized_evaluation_workflow,
    default_fit_workflow,
    default_init_params_workflow,
)

from ecrec.config import RunConfig
from ecrec.errors import EcrecError
from ecrec.evaluation import PooledEvaluator
from ecrec.federation.client import SERVER_ROUND
from ecrec.model.ranker import build_ranker
from ecrec.runfolder import RunFolder

log = logging.getLogger("ecrec.server")


class RoundFailedError(EcrecError):
    """A round ended without any aggregated update."""


class RoundRecorder:
    """Collects client reports per round and writes the run folder after each evaluation."""

    def __init__(
        self,
        *,
        run: RunFolder,
        config: RunConfig,
        evaluator: PooledEvaluator,
        names: list[str],
        reports: Mapping[int, list[dict[str, Any]]] | None = None,
        on_round: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.run = run
        self.config = config
        self.evaluator = evaluator
        self.names = names
        self.reports: dict[int, list[dict[str, Any]]] = {
            int(k): list(v) for k, v in (reports or {}).items()
        }
        self.failures: dict[int, int] = {}
        self.on_round = on_round
        self._round_started = time.perf_counter()

    def _audit(self, server_round: int, scores: np.ndarray) -> int:
        """Fairness audit of this round's scoring (cheap: no extra model calls)."""
        from ecrec.fairness import AuditConfig, append_fairness, audit_rankings

        audit = audit_rankings(
            self.evaluator.validation, scores, config=AuditConfig(k=self.config.evaluation.k)
        )
        append_fairness(self.run.path, server_round, audit)
        return len(audit["flags"])

    def _explain(self, server_round: int) -> None:
        """SHAP explanations of the global ranker as it is now (model already loaded)."""
        from ecrec.explain import explain_run, write_explanations

        report = self.config.report
        result = explain_run(
            self.evaluator.ranker,
            self.evaluator.validation,
            queries=report.explain_queries,
            top_k=report.explain_top_k,
            seed=self.config.data.seed,
        )
        result["round"] = server_round
        write_explanations(result, self.run.path)

    def finish(self) -> None:
        """After the last round: explanations, the privacy report and the HTML report."""
        from ecrec.report.html import write_report
        from ecrec.report.privacy_report import write_privacy_report

        last = max(self.reports, default=0)
        if self.config.report.explain and last:
            self._explain(last)
        write_privacy_report(self.run.path)
        if self.config.report.html:
            write_report(self.run.path)

    def round_started(self) -> None:
        self._round_started = time.perf_counter()

    def record_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Any]
    ) -> None:
        self.reports[server_round] = [dict(res.metrics) for _, res in results]
        self.failures[server_round] = len(failures)
        for failure in failures:
            log.warning("round %s: a client failed: %s", server_round, _describe(failure))

    def evaluate(
        self, server_round: int, arrays: list[np.ndarray], _config: dict[str, Any]
    ) -> tuple[float, dict[str, Any]]:
        state = dict(zip(self.names, (np.asarray(a, np.float32) for a in arrays), strict=True))
        metrics = self.evaluator.evaluate(state)
        k = self.config.evaluation.k
        reports = self.reports.get(server_round, [])
        adapter_bytes = int(sum(a.nbytes for a in state.values()))
        record: dict[str, Any] = {
            "round": server_round,
            **{key: v for key, v in metrics.items() if key != f"per_merchant_ndcg@{k}"},
            f"per_merchant_ndcg@{k}": metrics[f"per_merchant_ndcg@{k}"],
            "clients": len(reports),
            "declined": sorted(r["merchant_id"] for r in reports if r.get("declined")),
            "failures": self.failures.get(server_round, 0),
            "epsilon": {r["merchant_id"]: r.get("epsilon_spent") for r in reports},
            "bytes_up": int(sum(r.get("bytes_up", 0) for r in reports)),
            "bytes_down": adapter_bytes * (len(reports) + self.failures.get(server_round, 0)),
            "wall_seconds": round(time.perf_counter() - self._round_started, 3),
        }
        if self.config.report.audit and self.evaluator.last_scores is not None:
            record["fairness_flags"] = self._audit(server_round, self.evaluator.last_scores)
        every = self.config.report.explain_every
        if self.config.report.explain and every and server_round and server_round % every == 0:
            self._explain(server_round)
        self.run.append_metrics(record)
        self.run.save_checkpoint(
            server_round,
            state,
            {"names": self.names, "reports": {str(k): v for k, v in self.reports.items()}},
        )
        self.run.write_privacy(privacy_summary(self.config, self.reports))
        if self.on_round is not None:
            self.on_round(record)
        self.round_started()
        loss = metrics.get("logloss")
        return float(loss) if loss is not None and np.isfinite(loss) else 0.0, {
            key: float(v) for key, v in metrics.items() if isinstance(v, int | float)
        }


def _describe(failure: Any) -> str:
    if isinstance(failure, BaseException):
        return f"{type(failure).__name__}: {failure}"
    _, res = failure
    return f"status {res.status.code}: {res.status.message}"


def privacy_summary(
    config: RunConfig, reports: Mapping[int, list[dict[str, Any]]]
) -> dict[str, Any]:
    """``privacy.json``: per merchant, cumulative ε after each round it was asked."""
    merchants: dict[str, dict[str, Any]] = {}
    for server_round in sorted(reports):
        for report in reports[server_round]:
            mid = str(report["merchant_id"])
            entry = merchants.setdefault(
                mid,
                {
                    "budget_epsilon": report.get("budget_epsilon"),
                    "delta": config.privacy.delta,
                    "accountant": config.privacy.accountant,
                    "rounds": [],
                    "declined_rounds": [],
                },
            )
            declined = bool(report.get("declined"))
            entry["rounds"].append(
                {
                    "round": server_round,
                    "epsilon": report.get("epsilon_spent"),
                    "steps": report.get("steps", 0),
                    "noise_multiplier": report.get("noise_multiplier"),
                    "sample_rate": report.get("sample_rate"),
                    "declined": declined,
                    **({"reason": report.get("decline_reason")} if declined else {}),
                }
            )
            if declined:
                entry["declined_rounds"].append(server_round)
            entry["epsilon_spent"] = report.get("epsilon_spent")
            entry["remaining_epsilon"] = report.get("epsilon_remaining")
            entry["steps_total"] = sum(r["steps"] or 0 for r in entry["rounds"])
            entry["status"] = "declining" if declined else "active"
    return {
        "accountant": config.privacy.accountant,
        "delta": config.privacy.delta,
        "dp": config.train.dp,
        "merchants": merchants,
    }


def _sum_fit_metrics(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Round totals for Flower's history (per-client reports go to the recorder)."""
    return {
        "examples": sum(n for n, _ in results),
        "declined": sum(int(m.get("declined", 0)) for _, m in results),
    }


def make_strategy(
    config: RunConfig, *, initial: list[np.ndarray], recorder: RoundRecorder
) -> Strategy:
    """The configured Flower strategy, with the recorder hooked into fit and evaluate."""
    fed = config.federation
    base_cls: type[FedAvg] = {"fedavg": FedAvg, "fedprox": FedProx, "fedadam": FedAdam}[
        fed.strategy
    ]

    class RecordingStrategy(base_cls):  # type: ignore[misc, valid-type]
        """Records each round's client reports; keeps the model if everyone declined."""

        def aggregate_fit(
            self,
            server_round: int,
            results: list[tuple[ClientProxy, FitRes]],
            failures: list[Any],
        ) -> tuple[Parameters | None, dict[str, Any]]:
            recorder.record_fit(server_round, results, failures)
            if sum(res.num_examples for _, res in results) == 0:
                log.warning("round %s: no merchant trained; global model unchanged", server_round)
                return None, {}
            return super().aggregate_fit(server_round, results, failures)

    kwargs: dict[str, Any] = dict(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=fed.min_clients,
        min_evaluate_clients=0,
        min_available_clients=fed.min_clients,
        evaluate_fn=recorder.evaluate,
        on_fit_config_fn=lambda server_round: {SERVER_ROUND: server_round},
        fit_metrics_aggregation_fn=_sum_fit_metrics,
        initial_parameters=ndarrays_to_parameters(initial),
    )
    if fed.strategy == "fedprox":
        kwargs["proximal_mu"] = fed.proximal_mu
    if fed.strategy == "fedadam":
        kwargs["eta"] = fed.server_learning_rate
    strategy: Strategy = RecordingStrategy(**kwargs)
    if fed.client_dp:
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy,
            noise_multiplier=fed.client_noise_multiplier,
            clipping_norm=fed.client_clipping_norm,
            num_sampled_clients=fed.min_clients,
        )
    return strategy


@dataclass
class ServerPlan:
    """Everything the round loop needs, prepared before Flower starts."""

    config: RunConfig
    recorder: RoundRecorder
    initial: list[np.ndarray]
    start_round: int


def plan_server_run(
    config: RunConfig,
    *,
    run: RunFolder,
    validation: pd.DataFrame,
    resume: bool,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> ServerPlan:
    """Open the run folder (fresh or resumed), build the evaluator and initial model.

    A fresh run refuses a folder that already holds one, so nothing is lost.
    """
    latest = run.latest() if resume else None
    if resume and latest is None:
        raise EcrecError(f"{run.path}: nothing to resume (no checkpoints/server_state.json)")
    if not resume and run.metrics_path.exists():
        raise EcrecError(f"{run.path}: already holds a run; resume it or choose a new folder")
    run.create()
    run.write_config(config.to_toml())
    ranker = build_ranker(config.model)
    evaluator = PooledEvaluator(ranker=ranker, validation=validation, config=config.evaluation)
    names = list(ranker.adapter_state())
    initial = list(ranker.adapter_state().values())
    start_round = 1
    reports: dict[int, list[dict[str, Any]]] = {}
    if latest is not None:
        done, state, server_state = latest
        if list(state) != names:
            raise EcrecError(f"{run.path}: checkpoint does not match the configured ranker")
        if done >= config.federation.rounds:
            raise EcrecError(
                f"{run.path}: all {config.federation.rounds} rounds already done; "
                "raise the number of rounds to continue"
            )
        start_round = done + 1
        initial = list(state.values())
        reports = {int(k): v for k, v in server_state.get("reports", {}).items()}
    recorder = RoundRecorder(
        run=run,
        config=config,
        evaluator=evaluator,
        names=names,
        reports=reports,
        on_round=on_round,
    )
    return ServerPlan(config=config, recorder=recorder, initial=initial, start_round=start_round)


def run_federation(
    grid: Grid,
    context: Context,
    *,
    plan: ServerPlan,
    quiet: bool = True,
) -> None:
    """Run rounds ``plan.start_round..rounds`` (round 0 is evaluated when fresh)."""
    config, recorder, initial, start_round = (
        plan.config,
        plan.recorder,
        plan.initial,
        plan.start_round,
    )
    if quiet:
        FLOWER_LOGGER.setLevel(logging.WARNING)
    fed = config.federation
    strategy = make_strategy(config, initial=initial, recorder=recorder)
    legacy = LegacyContext(
        context=context, config=ServerConfig(num_rounds=fed.rounds), strategy=strategy
    )
    fit_workflow: Callable[[Grid, LegacyContext], Any] = default_fit_workflow
    if fed.secagg:
        fit_workflow = SecAggPlusWorkflow(
            num_shares=fed.num_shares,
            reconstruction_threshold=fed.reconstruction_threshold,
            max_weight=fed.max_weight,
            clipping_range=fed.clipping_range,
            quantization_range=fed.quantization_range,
            timeout=fed.timeout,
        )
    thread, stop, ready = start_update_client_manager_thread(grid, legacy.client_manager)
    try:
        ready.wait()
        if start_round == 1:
            default_init_params_workflow(grid, legacy)  # also evaluates round 0
        else:
            legacy.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
                ndarrays_to_parameters(initial), True
            )
        cfg = ConfigRecord()
        cfg[Key.START_TIME] = time.time()
        legacy.state.config_records[MAIN_CONFIGS_RECORD] = cfg
        for server_round in range(start_round, fed.rounds + 1):
            cfg[Key.CURRENT_ROUND] = server_round
            recorder.round_started()
            fit_workflow(grid, legacy)
            if server_round not in recorder.reports:
                # Flower logs and moves on when no client answers or SecAgg+
                # cannot unmask; evaluating would record a round that never ran.
                raise RoundFailedError(
                    f"round {server_round} failed: no merchant update was aggregated "
                    f"(too few nodes reachable, or SecAgg+ could not unmask); rounds up to "
                    f"{server_round - 1} are saved in {recorder.run.path}, use --resume"
                )
            default_centralized_evaluation_workflow(grid, legacy)
    finally:
        stop.set()
        thread.join()
    recorder.finish()
