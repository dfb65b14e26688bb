"""Scenario: one merchant's plain-mode update is broken or hostile when it reaches the server.

For plain mode only (``federation.secagg = false``, nodes whose policy allows it). A mod
runs *outside* the ecrec mods (:func:`ecrec.federation.client.make_client_app`'s
``extra_mods``): the node trains and answers as usual -- its ledger records the spend --
and then its reply's arrays are replaced, as a compromised node or a tampering network
would, before they leave. The server must drop that update naming the merchant
(:func:`ecrec.federation.screening.screen_updates`) and aggregate the others.

Kinds of poison (:data:`KINDS`): ``nan``, ``inf`` (one value), ``shape`` (an array with
one row too many), ``missing`` (the last array left out), ``int`` (int32 arrays),
``scale100`` (the update's change from the global model times 100).

    from ecrec_simulations.poison import simulate_with_poison
    summary = simulate_with_poison(config, out=Path("runs/p"), merchant="m01",
                                   kinds={1: "nan", 2: "scale100"}, node_policy=policy)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from flwr.app import Context, Message
    from flwr.client import ClientApp
    from flwr.clientapp.typing import ClientAppCallable

    from ecrec.config import RunConfig
    from ecrec.federation.simulation import SimulationSummary

KINDS = ("nan", "inf", "shape", "missing", "int", "scale100")
_IN, _OUT, _METRICS = "fitins.parameters", "fitres.parameters", "fitres.metrics"


def poisoned(kind: str, update: list[np.ndarray], start: list[np.ndarray]) -> list[np.ndarray]:
    """``update`` (a node's arrays) damaged as ``kind`` says; ``start`` is the global model."""
    arrays = [np.array(a, copy=True) for a in update]
    if kind == "nan":
        arrays[0].flat[0] = np.nan
    elif kind == "inf":
        arrays[-1].flat[-1] = np.inf
    elif kind == "shape":
        arrays[0] = np.concatenate([arrays[0], arrays[0][:1]], axis=0)
    elif kind == "missing":
        arrays = arrays[:-1]
    elif kind == "int":
        arrays = [a.astype(np.int32) for a in arrays]
    elif kind == "scale100":
        arrays = [s + 100.0 * (a - s) for a, s in zip(arrays, start, strict=True)]
    else:
        raise ValueError(f"unknown poison {kind!r} (one of {', '.join(KINDS)})")
    return arrays


@dataclass(frozen=True)
class PoisonMod:
    """A ClientApp mod: replace ``merchant``'s plain fit reply arrays, per round.

    A class, not a closure, so Ray can ship it to its workers by reference.
    """

    merchant: str
    kinds: Mapping[int, str] = field(default_factory=dict)

    def __call__(self, msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        from flwr.app.message_type import MessageType
        from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
        from flwr.compat.common import recorddict_compat as compat

        reply = call_next(msg, ctxt)
        kind = self.kinds.get(int(msg.metadata.group_id or 0))
        if (
            kind is None
            or reply.has_error()
            or msg.metadata.message_type != MessageType.TRAIN
            or _OUT not in reply.content.array_records
            or reply.content.config_records[_METRICS].get("merchant") != self.merchant
        ):
            return reply

        def arrays(record: Any) -> list[np.ndarray]:
            return parameters_to_ndarrays(compat.arrayrecord_to_parameters(record, True))

        update = arrays(reply.content.array_records[_OUT])
        start = arrays(msg.content.array_records[_IN])
        bad = ndarrays_to_parameters(poisoned(kind, update, start))
        reply.content.array_records[_OUT] = compat.parameters_to_arrayrecord(bad, True)
        return reply


def poison_app(merchant: str, kinds: Mapping[int, str]) -> ClientApp:
    """The ecrec ClientApp with :class:`PoisonMod` outside its own mods."""
    from ecrec.federation.client import make_client_app

    return make_client_app(extra_mods=[PoisonMod(merchant, dict(kinds))])


def simulate_with_poison(
    config: RunConfig, *, out: Path, merchant: str, kinds: Mapping[int, str], **kwargs: Any
) -> SimulationSummary:
    """``ecrec simulate`` where ``merchant``'s update is poisoned as ``kinds[round]`` says."""
    from ecrec.federation.simulation import simulate

    return simulate(config, out=out, client_app=poison_app(merchant, kinds), **kwargs)


__all__ = ["KINDS", "PoisonMod", "poison_app", "poisoned", "simulate_with_poison"]
