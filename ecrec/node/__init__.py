"""A merchant's node: its policy, its settings, its journal, and what it does in a round."""

from ecrec.node.journal import NodeJournal
from ecrec.node.node import (
    BUDGET_DECLINE,
    MerchantNode,
    RoundOutcome,
    RoundRequest,
    UpdateRejectedError,
    check_update,
    check_weight,
)
from ecrec.node.policy import NodePolicy, PolicyDeclined, Violation, load_policy
from ecrec.node.settings import NodeSettings

__all__ = [
    "BUDGET_DECLINE",
    "MerchantNode",
    "NodeJournal",
    "NodePolicy",
    "NodeSettings",
    "PolicyDeclined",
    "RoundOutcome",
    "RoundRequest",
    "UpdateRejectedError",
    "Violation",
    "check_update",
    "check_weight",
    "load_policy",
]
