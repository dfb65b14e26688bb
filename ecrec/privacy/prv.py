"""Opacus' PRV accountant, refused for histories whose grid would take minutes to build."""

from __future__ import annotations

import math
from collections.abc import Sequence

from opacus.accountants import PRVAccountant

from ecrec.errors import PrivacyError
from ecrec.privacy.rdp import _rdp_epsilon
from ecrec.privacy.spend import RoundSpend

#: Largest PRV discretisation grid we let Opacus build (~15 s and ~1 GB on 2
#: cores). Histories that need more have an enormous ε anyway; without this
#: guard a tiny σ makes the PRV accountant run for minutes.
PRV_MAX_GRID = 2**22


def _prv_grid_estimate(spends: Sequence[RoundSpend], *, delta: float) -> float:
    """Estimate of the grid size Opacus' PRVAccountant.get_epsilon will allocate.

    Mirrors its defaults (eps_error=0.01, delta_error=delta/1000): the domain
    half-width is at least the RDP ε at delta_error/4 (Opacus may widen it
    further) and the mesh is eps_error / sqrt(steps * log(12 / delta_error) / 2).
    """
    delta_error = delta / 1000
    half_width = _rdp_epsilon(spends, delta=delta_error / 4)
    total_steps = sum(spend.steps for spend in spends)
    mesh = 0.01 / math.sqrt(total_steps * math.log(12 / delta_error) / 2)
    return 2 * half_width / mesh


def _prv_epsilon(spends: Sequence[RoundSpend], *, delta: float) -> float:
    grid = _prv_grid_estimate(spends, delta=delta)
    if not grid <= PRV_MAX_GRID:
        raise PrivacyError(
            f"the prv accountant would need a grid of ~{grid:.2g} points for this history "
            "(its ε is enormous: too little noise); use the rdp accountant"
        )
    accountant = PRVAccountant()
    accountant.history = [spend.as_tuple() for spend in spends]
    return float(accountant.get_epsilon(delta))
