"""Privacy accounting and the per-node privacy ledger."""

from ecrec.privacy.accounting import (
    ACCOUNTANTS,
    PLD_DISCRETIZATION,
    RDP_ORDERS,
    Accountant,
    RoundSpend,
    epsilon_for_history,
    epsilon_trajectory,
    noise_multiplier_for_target,
    plan,
)
from ecrec.privacy.ledger import PrivacyLedger, RoundCheck, read_key_file

__all__ = [
    "ACCOUNTANTS",
    "PLD_DISCRETIZATION",
    "RDP_ORDERS",
    "Accountant",
    "PrivacyLedger",
    "RoundCheck",
    "RoundSpend",
    "epsilon_for_history",
    "epsilon_trajectory",
    "noise_multiplier_for_target",
    "plan",
    "read_key_file",
]
