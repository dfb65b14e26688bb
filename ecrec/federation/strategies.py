"""The Flower strategy a run uses (FedAvg, FedProx, FedAdam, optionally wrapped for
client-side clipping DP) and the state FedAdam carries between rounds, checkpointed so a
resumed run equals an uninterrupted one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.common import FitRes, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    FedAdam,
    FedAvg,
    FedProx,
    Strategy,
)

from ecrec.config import RunConfig
from ecrec.federation.rounds import RoundLog
from ecrec.federation.screening import screen_updates

#: Strategy attributes that carry state between rounds (FedAdam / FedOpt).
STRATEGY_STATE = ("current_weights", "m_t", "v_t")


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
