"""Client mods: the merchant's privacy guard, and protocols that follow the server.

:func:`privacy_guard_mod` runs before every other mod and checks what the server
sends against the node's own policy *before* the node answers: a plain (unmasked)
training request when the policy requires SecAgg+, and each SecAgg+ stage -- the
SETUP parameters (sample size, shares, threshold, max weight) before the node sends
its public keys, the number of peers before it shares its secrets, and the UNMASK
lists before it reveals any share. Flower's ``secaggplus_mod`` trusts all of these
(ENVIRONMENT.md: it never checks the threshold and share count it receives).

Flower's ``secaggplus_mod`` and ``fixedclipping_mod`` raise when the server is not
running the matching workflow/wrapper; the ``optional_*`` wrappers (hand-written:
Flower has no "if present" mods) apply each protocol only when the server asks for
it -- the guard has already refused plain mode if the policy forbids it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flwr.app import ConfigRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    Key,
    Stage,
)
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from ecrec.federation.protocol import RoundDeclined

if TYPE_CHECKING:
    from ecrec.node.policy import Violation
    from ecrec.node.settings import NodeSettings

GUARD_STATE = "ecrec_guard"


def _is_train(msg: Message) -> bool:
    return msg.metadata.message_type == MessageType.TRAIN


def _round(msg: Message) -> int:
    try:
        return int(msg.metadata.group_id or 0)
    except ValueError:
        return 0


def _merchant(settings: NodeSettings) -> str:
    """The merchant id, read from one column of the data (cheap; no training imports)."""
    import pandas as pd

    try:
        ids = pd.read_parquet(settings.data_path, columns=["merchant_id"])["merchant_id"]
    except Exception:  # a decline must still be sent; the node's own loader says why
        return "?"
    return str(ids.iloc[0]) if len(ids) else "?"


def _weight(settings: NodeSettings, max_weight: float) -> float:
    """The weight this node would send: 1 (uniform weighting, max-weight 1), or its row
    count if its policy allows disclosing it and the server weighs by examples."""
    if not settings.policy.disclose_example_count or max_weight <= 1:
        return 1.0
    import pyarrow.parquet as pq

    return float(pq.ParquetFile(settings.data_path).metadata.num_rows)


def _settings_or_default(ctxt: Context, nodes_file: str | None) -> NodeSettings | None:
    """The node's settings; ``None`` for a simulated node of a bare ``flwr run`` before its
    first training message (the ServerApp writes that simulation's nodes file, and only
    the training message says where: its nodes all apply the default policy)."""
    from ecrec.federation.client import SIMULATION_NODES_ENV, node_settings
    from ecrec.node.settings import PARTITION_ID

    known = nodes_file or os.environ.get(SIMULATION_NODES_ENV)
    if PARTITION_ID in ctxt.node_config and "data-path" not in ctxt.node_config and not known:
        return None
    return node_settings(ctxt, nodes_file=nodes_file)


def _decline(
    settings: NodeSettings | None, msg: Message, violations: list[Violation]
) -> RoundDeclined:
    from ecrec.node.journal import NodeJournal

    reason = "; ".join(str(v) for v in violations)
    if settings is None:
        return RoundDeclined(merchant="?", server_round=_round(msg), reason=reason)
    NodeJournal(settings.journal_path).append(
        "declined",
        round=_round(msg),
        settings=[v.setting for v in violations],
        reason=reason,
        told_server=reason,
    )
    return RoundDeclined(merchant=_merchant(settings), server_round=_round(msg), reason=reason)


def privacy_guard_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Refuse, before answering, any request that the node's own policy forbids."""
    if not _is_train(msg):
        return call_next(msg, ctxt)
    from ecrec.federation.protocol import SIMULATION_NODES
    from ecrec.node.checks import check_peers, check_secagg_setup, check_unmask
    from ecrec.node.policy import NodePolicy, Violation

    nodes_file = ctxt.run_config.get(SIMULATION_NODES)
    settings = _settings_or_default(ctxt, str(nodes_file) if nodes_file else None)
    policy = settings.policy if settings is not None else NodePolicy()
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    if configs is None:
        if policy.require_secagg:
            raise _decline(
                settings,
                msg,
                [
                    Violation(
                        "federation.secagg",
                        "the server sent a plain training request; "
                        "this node's policy sends updates only masked by SecAgg+",
                    )
                ],
            )
        return call_next(msg, ctxt)

    stage = configs.get(Key.STAGE)
    guard = ctxt.state.config_records.get(GUARD_STATE) or ConfigRecord({})
    violations: list[Violation] = []
    if stage == Stage.SETUP:
        guard = ConfigRecord({"round": _round(msg), "contributed": False})
        violations = check_secagg_setup(
            policy,
            sample_num=_int(configs.get(Key.SAMPLE_NUMBER)),
            share_num=_int(configs.get(Key.SHARE_NUMBER)),
            threshold=_int(configs.get(Key.THRESHOLD)),
            max_weight=float(configs.get(Key.MAX_WEIGHT, 0.0)),  # type: ignore[arg-type]
            weight=_weight(settings, float(configs.get(Key.MAX_WEIGHT, 0.0)))  # type: ignore[arg-type]
            if settings is not None
            else 1.0,
        )
    elif stage == Stage.SHARE_KEYS:
        violations = check_peers(policy, peers=sum(1 for key in configs if key != Key.STAGE))
    elif stage == Stage.UNMASK:
        violations = check_unmask(
            policy,
            node_id=msg.metadata.dst_node_id,
            active=list(configs.get(Key.ACTIVE_NODE_ID_LIST, [])),  # type: ignore[arg-type]
            dead=list(configs.get(Key.DEAD_NODE_ID_LIST, [])),  # type: ignore[arg-type]
            contributed=bool(guard.get("contributed", False)) and guard.get("round") == _round(msg),
        )
    if violations:
        raise _decline(settings, msg, violations)
    ctxt.state.config_records[GUARD_STATE] = guard
    if stage != Stage.COLLECT_MASKED_VECTORS:
        return call_next(msg, ctxt)
    reply = call_next(msg, ctxt)  # trains; a decline raises and is not a contribution
    guard["contributed"] = not reply.has_error()
    ctxt.state.config_records[GUARD_STATE] = guard
    return reply


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def optional_secaggplus_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """SecAgg+ when the server runs the SecAgg+ workflow; plain otherwise."""
    if _is_train(msg) and RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)


def optional_fixedclipping_mod(
    msg: Message, ctxt: Context, call_next: ClientAppCallable
) -> Message:
    """Client-side update clipping when the server's client-DP wrapper asks for it."""
    if _is_train(msg):
        for record in msg.content.config_records.values():
            if KEY_CLIPPING_NORM in record:
                return fixedclipping_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)
