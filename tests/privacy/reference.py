"""Independent reference accountants for the privacy tests.

* Google's ``dp_accounting`` RDP accountant: its own implementation of the
  sampled-Gaussian RDP, checked against ecrec's (Opacus') RDP;
* ``dp_accounting``'s ``PLDAccountant`` fed the history event by event, round by
  round: what ecrec's PLD accountant must equal;
* Opacus' PRV accountant (Gopi et al.), an implementation of numerical
  composition independent of ``dp_accounting``: the cross-check for PLD;
* the Rényi divergence of the sampled Gaussian by numerical integration of its
  definition, which settles the fractional orders where the two RDP libraries
  sum different series.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import dp_accounting
import numpy as np
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from opacus.accountants import PRVAccountant
from scipy import integrate, special

from ecrec.privacy import PLD_DISCRETIZATION, RDP_ORDERS, RoundSpend


def _compose(accountant, history: Sequence[RoundSpend]):
    for spend in history:
        if spend.steps:
            event = dp_accounting.PoissonSampledDpEvent(
                spend.sample_rate, dp_accounting.GaussianDpEvent(spend.noise_multiplier)
            )
            accountant.compose(event, spend.steps)
    return accountant


def google_rdp_epsilon(
    history: Sequence[RoundSpend], delta: float, orders: Sequence[float] = RDP_ORDERS
) -> float:
    """ε from dp_accounting's RDP accountant (at ecrec's orders unless told otherwise)."""
    return float(_compose(RdpAccountant(orders=list(orders)), history).get_epsilon(delta))


def google_pld_epsilon(history: Sequence[RoundSpend], delta: float) -> float:
    """ε from dp_accounting's PLDAccountant on ecrec's grid, one round at a time."""
    accountant = PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    return float(_compose(accountant, history).get_epsilon(delta))


def opacus_prv_epsilon(
    history: Sequence[RoundSpend], delta: float, *, eps_error: float = 0.01
) -> float:
    """Opacus' PRV ε: the upper end of an estimate within ``eps_error`` of the true ε."""
    accountant = PRVAccountant()
    accountant.history = [spend.as_tuple() for spend in history if spend.steps]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", UserWarning)
        return float(accountant.get_epsilon(delta, eps_error=eps_error))


def rdp_by_integration(sample_rate: float, noise_multiplier: float, order: float) -> float:
    """One step's RDP of the Poisson-sampled Gaussian at ``order``, from its definition.

    D_α = log(A_α) / (α - 1) with A_α = E_{z~N(0,σ²)}[(1 - q + q·e^{(2z-1)/(2σ²)})^α]
    (Mironov, Talwar, Zhang 2019), integrated with scipy's adaptive quadrature.
    A_α - 1 is integrated rather than A_α (E[ratio - 1] = 0, so subtracting α·x
    keeps the integrand second order and the tiny-q cases accurate).
    """
    q, sigma, alpha = sample_rate, noise_multiplier, order

    log_weight_scale = -math.log(sigma * math.sqrt(2 * math.pi))
    x_is_one = math.log1p(1 / q)  # the t at which the density ratio minus 1 reaches 1

    def integrand(z: float) -> float:
        log_weight = log_weight_scale - z**2 / (2 * sigma**2)
        t = (2 * z - 1) / (2 * sigma**2)
        if t < x_is_one:  # x = ratio - 1 in (-1, 1): no overflow, no cancellation
            x = q * math.expm1(t)
            return math.exp(log_weight) * (math.expm1(alpha * math.log1p(x)) - alpha * x)
        log_x = math.log(q) + t + math.log1p(-math.exp(-t))  # in log space: x may overflow
        ratio_power = math.exp(log_weight + alpha * np.logaddexp(0.0, log_x))
        return ratio_power - math.exp(log_weight + np.logaddexp(0.0, math.log(alpha) + log_x))

    # The weight concentrates around 0 and around z = α (the tilted component).
    lower, upper = -40 * sigma, alpha + 40 * sigma
    value, _ = integrate.quad(
        integrand, lower, upper, points=[0.0, 0.5, alpha], limit=500, epsabs=0, epsrel=1e-11
    )
    return float(special.log1p(value) / (alpha - 1))
