"""Independent reference accountants (Google's dp_accounting) for the privacy tests."""

from __future__ import annotations

from collections.abc import Sequence

import dp_accounting
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from ecrec.privacy import RDP_ORDERS, RoundSpend


def _compose(accountant, history: Sequence[RoundSpend]):
    for spend in history:
        if spend.steps:
            event = dp_accounting.PoissonSampledDpEvent(
                spend.sample_rate, dp_accounting.GaussianDpEvent(spend.noise_multiplier)
            )
            accountant.compose(event, spend.steps)
    return accountant


def google_rdp_epsilon(history: Sequence[RoundSpend], delta: float) -> float:
    """ε from dp_accounting's RDP accountant at the same orders ecrec uses."""
    return float(_compose(RdpAccountant(orders=list(RDP_ORDERS)), history).get_epsilon(delta))


def google_pld_epsilon(history: Sequence[RoundSpend], delta: float) -> float:
    """ε from dp_accounting's PLD accountant (the independent check for PRV)."""
    return float(_compose(PLDAccountant(), history).get_epsilon(delta))
