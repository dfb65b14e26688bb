"""Flower client adapter: the ClientApp over :class:`~ecrec.node.MerchantNode`.

One node factory for simulation and deployment: the node's settings come from its
own node config (``ecrec-client`` sets it; a simulated node's comes from the
simulation's nodes file), the server's request from the round's fit config. The
privacy guard mod runs first, so a SecAgg+ setup or a plain-mode request that the
merchant's policy refuses is declined before anything leaves the node.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.client import Client, ClientApp, NumPyClient
from flwr.clientapp.typing import Mod
from flwr.common import Context

from ecrec.federation.mods import (
    optional_fixedclipping_mod,
    optional_secaggplus_mod,
    privacy_guard_mod,
)
from ecrec.federation.protocol import (
    ECREC_CONFIG,
    PROXIMAL_MU,
    SERVER_ROUND,
    SIMULATION_NODES,
    RoundDeclined,
)

if TYPE_CHECKING:  # the node pulls in torch/opacus; only messages that train need it
    from ecrec.node import NodeSettings

#: Set by ``ecrec simulate``: the nodes file of the simulation it runs.
SIMULATION_NODES_ENV = "ECREC_SIMULATION_NODES"
CLIENT_COMPONENT = "ecrec_client.client_app:app"


def node_settings(context: Context, *, nodes_file: str | None = None) -> NodeSettings:
    """This node's settings, from its node config (or the simulation's nodes file)."""
    from ecrec.node.settings import NodeSettings, node_config_for

    values = node_config_for(
        context.node_config,
        nodes_file=os.environ.get(SIMULATION_NODES_ENV) or nodes_file,
    )
    return NodeSettings.from_node_config(values)


def _scalars(metrics: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    out: dict[str, bool | int | float | str] = {}
    for key, value in metrics.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool | int | float | str):
            out[key] = value
    return out


class MerchantClient(NumPyClient):
    """Receives the global adapter and the server's request; answers with the node's round."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        raise RoundDeclined(merchant="?", server_round=0, reason="nodes never send initial weights")

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        from ecrec.config import loads_config
        from ecrec.errors import EcrecError
        from ecrec.node import MerchantNode, RoundRequest

        server_round = int(config.get(SERVER_ROUND, 0))
        settings = node_settings(self.context, nodes_file=_text(config.get(SIMULATION_NODES)))
        node = MerchantNode(settings=settings)
        try:
            request = loads_config(str(config.get(ECREC_CONFIG, "")), source="server request")
        except EcrecError as err:
            node.journal.append("declined", round=server_round, reason=str(err))
            raise RoundDeclined(
                merchant=node.merchant_id, server_round=server_round, reason=str(err)
            ) from None
        outcome = node.run_round(
            RoundRequest(
                server_round=server_round,
                config=request,
                global_state=parameters,
                proximal_mu=float(config.get(PROXIMAL_MU, 0.0)),
            )
        )
        if outcome.declined:
            raise RoundDeclined(
                merchant=node.merchant_id,
                server_round=server_round,
                reason=outcome.decline_reason or "declined",
            )
        assert outcome.state is not None
        return list(outcome.state.values()), int(outcome.weight), _scalars(outcome.disclosed)


def _text(value: Any) -> str | None:
    return str(value) if value else None


def make_client_app(*, extra_mods: Sequence[Mod] = ()) -> ClientApp:
    """The ecrec ClientApp. Mods run outside-in: the guard, then SecAgg+, then clipping
    (a reply passes the inner mods first, so client-level clipping happens before
    SecAgg+ masks the update).

    ``extra_mods`` run outside all of them, first to last: simulation scenarios use
    them to model what happens *to* a node (it drops out, its network fails), never to
    change what its policy allows. The installed app (``ecrec_client.client_app:app``)
    has none.
    """

    def client_fn(context: Context) -> Client:
        return MerchantClient(context).to_client()

    return ClientApp(
        client_fn=client_fn,
        mods=[
            *extra_mods,
            privacy_guard_mod,
            optional_secaggplus_mod,
            optional_fixedclipping_mod,
        ],
    )


__all__ = [
    "CLIENT_COMPONENT",
    "SIMULATION_NODES_ENV",
    "MerchantClient",
    "make_client_app",
    "node_settings",
]
