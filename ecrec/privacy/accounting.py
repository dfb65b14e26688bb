"""Privacy accounting: the (ε, δ) that a node's DP-SGD history costs.

A history is a list of :class:`RoundSpend` (noise multiplier σ, Poisson sample
rate q, number of steps), one per round; rounds may differ in σ and q. Rounds
with ``steps == 0`` spend nothing and are left out (an empty history costs 0).
Nothing here re-derives a privacy analysis; three library accountants do:

``"pld"`` (the default, for spending and for σ calibration)
    Privacy loss distributions from Google's ``dp_accounting``: every round is a
    Poisson-subsampled Gaussian self-composed ``steps`` times, and rounds are
    composed in order. This is exactly what ``dp_accounting.pld.PLDAccountant``
    computes when fed ``PoissonSampledDpEvent(q, GaussianDpEvent(σ))`` round by
    round (the tests check ε for equality). We call the same ``dp_accounting.pld``
    functions that accountant calls only so that a round's distribution and a
    history's composed distribution can be cached: the ledger recomputes the
    whole trajectory on every load and then asks for the same history plus one
    round, and the σ search re-evaluates the same prior history many times.

    Discretisation. ``pessimistic_estimate=True`` (connect-the-dots, the
    dp_accounting default): the privacy-loss distribution is put on a grid so that
    the discrete pair of distributions dominates the real one, and tail mass cut
    off while composing is moved to larger losses (the upper tail to an infinite
    loss). The ε is therefore an upper bound whatever the grid; the grid interval
    :data:`PLD_DISCRETIZATION` only sets how close it is. At 1e-4 (dp_accounting's
    default) the overshoot against a 10x finer grid measured < 1e-4 at ε ≈ 1.8
    after 1000 steps, 1.2e-4 at ε ≈ 0.95 after 10⁴ steps, ≤ 0.3 % for ε ≥ 0.25;
    where a step's loss is far below the grid (q ≤ 1e-3, 10⁴ steps) it adds up to
    < 0.01 absolute, all at ε < 0.1 (0.017 instead of 0.008 at q = 1e-4, σ = 5,
    δ = 1e-8; 2 % at ε ≈ 0.09 for q = 1e-3). A 1e-3 grid builds 10x faster but
    overshot by 1.3 % at ε ≈ 0.95 after 10⁴ steps; and the ledger's ε must be
    comparable across rounds, so the interval is one constant.

``"rdp"`` (the cross-check)
    Opacus' Rényi-DP accountant over :data:`RDP_ORDERS`: Opacus' default
    fractional orders 1.1 … 10.9, every integer up to 63, and a tail up to 1024,
    converted to (ε, δ) with Balle et al. (2020). At integer orders Opacus and
    ``dp_accounting`` evaluate the same finite sum. At fractional orders Opacus
    sums the signed series, which is exact (the tests compare it with numerical
    integration of the Rényi divergence), while ``dp_accounting`` sums absolute
    values, an upper bound that is looser at large q; its RDP ε is therefore
    higher where those orders matter (measured: ≤ 0.3 % below ε = 7, 1.2 % at
    ε ≈ 7.8 and 2.9 % at ε ≈ 14 for q ≈ 0.3, up to 60 % for ε in the thousands).

``"prv"``
    Opacus' PRV accountant (the upper end of its estimate; eps_error 0.01),
    refused for histories whose grid would take minutes to build.

:func:`noise_multiplier_for_target` finds the smallest σ whose ε is within a
tolerance *below* the target (never above), for any accountant and any prior
history.

Modules: ``spend`` (:class:`RoundSpend`, argument checks), one module an accountant
(``pld``, ``rdp``, ``prv``), ``epsilon`` (ε of a history and its trajectory) and
``calibration`` (σ for a target ε, :func:`plan`); this module is their public face.
"""

from ecrec.privacy.calibration import noise_multiplier_for_target, plan
from ecrec.privacy.epsilon import epsilon_for_history, epsilon_trajectory
from ecrec.privacy.pld import PLD_DISCRETIZATION
from ecrec.privacy.rdp import RDP_ORDERS
from ecrec.privacy.spend import ACCOUNTANTS, Accountant, RoundSpend

__all__ = [
    "ACCOUNTANTS",
    "PLD_DISCRETIZATION",
    "RDP_ORDERS",
    "Accountant",
    "RoundSpend",
    "epsilon_for_history",
    "epsilon_trajectory",
    "noise_multiplier_for_target",
    "plan",
]
