"""Client mods that follow what the server actually runs.

Flower's ``secaggplus_mod`` and ``fixedclipping_mod`` raise when the server is
not running the matching workflow/wrapper. A merchant's node is started before
it knows the server's settings, so these thin wrappers (hand-written: Flower has
no "if present" mods) apply each protocol only when the server asks for it.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM


def _is_train(msg: Message) -> bool:
    return msg.metadata.message_type == MessageType.TRAIN


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
