"""Flower client adapter: a NumPyClient over :class:`~ecrec.node.MerchantNode`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.client import Client, ClientApp, NumPyClient
from flwr.common import Context

from ecrec.federation.mods import optional_fixedclipping_mod, optional_secaggplus_mod

if TYPE_CHECKING:  # the node pulls in torch/opacus; only messages that train need it
    from ecrec.node import MerchantNode

SERVER_ROUND = "server-round"
PROXIMAL_MU = "proximal_mu"  # the key Flower's FedProx strategy sends


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """Flower metrics must be scalars; drop anything else (e.g. None)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in metrics.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool | int | float | str):
            out[key] = value
    return out


class MerchantClient(NumPyClient):
    """Receives the global adapter, runs the node's round, returns the update."""

    def __init__(self, node: MerchantNode) -> None:
        self.node = node

    def _names(self) -> list[str]:
        return list(self.node.ranker.adapter_state())

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return list(self.node.ranker.adapter_state().values())

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        names = self._names()
        if len(names) != len(parameters):
            raise ValueError(
                f"server sent {len(parameters)} arrays; this node's ranker has {len(names)}"
            )
        global_state = dict(zip(names, parameters, strict=True))
        outcome = self.node.run_round(
            server_round=int(config[SERVER_ROUND]),
            global_state=global_state,
            proximal_mu=float(config.get(PROXIMAL_MU, 0.0)),
        )
        metrics = _scalar_metrics(outcome.metrics)
        if outcome.state is None:
            # A decline carries zero weight: the aggregate is the others' mean.
            return [np.asarray(p, dtype=np.float32) for p in parameters], 0, metrics
        return list(outcome.state.values()), int(outcome.metrics["examples"]), metrics


def make_client_app(node_factory: Callable[[Context], MerchantNode]) -> ClientApp:
    """A ClientApp whose nodes are built by ``node_factory(context)``.

    Mod order matters: a reply passes the inner mods first, so client-level
    clipping happens before SecAgg+ masks the update.
    """

    def client_fn(context: Context) -> Client:
        return MerchantClient(node_factory(context)).to_client()

    return ClientApp(
        client_fn=client_fn, mods=[optional_secaggplus_mod, optional_fixedclipping_mod]
    )
