"""Privacy accounting: thin keyword-only wrappers over the Opacus accountants.

A node's DP-SGD history is a list of :class:`RoundSpend` (noise multiplier,
Poisson sample rate, number of steps). Its (ε, δ) cost is computed by Opacus'
``RDPAccountant`` or ``PRVAccountant`` from that history; nothing here
re-derives the privacy analysis.

RDP orders. The RDP accountant uses :data:`RDP_ORDERS`, a set of **integer**
orders, not Opacus' default (which includes fractional orders 1.1 … 10.9).
At integer orders the sampled-Gaussian RDP is a finite binomial sum that Opacus
and Google's ``dp_accounting`` evaluate identically (agreement ~1e-13), so every
ε this project prints can be checked by an independent accountant (DESIGN.md
invariant). At fractional orders the two libraries use different series (signed
vs. absolute terms) and disagree by up to a few percent for large sample rates.
The price is a slightly more conservative ε: 2.1078 instead of Opacus' default
2.1014 for q=0.01, σ=1, 1000 steps, δ=1e-5.

Rounds with ``steps == 0`` spend nothing and are left out of the history given
to the accountants (an RDP→(ε, δ) conversion of an all-zero RDP curve would
otherwise report a small positive ε).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.utils import get_noise_multiplier

from ecrec.errors import PrivacyError

Accountant = Literal["rdp", "prv"]
ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")

#: Integer RDP orders shared by Opacus and the dp_accounting cross-check.
RDP_ORDERS: tuple[int, ...] = (*range(2, 64), 80, 96, 128, 192, 256, 384, 512, 1024)

#: Largest noise multiplier the searches try before declaring a target unreachable.
MAX_NOISE_MULTIPLIER = 1e6

#: Largest PRV discretisation grid we let Opacus build (~15 s and ~1 GB on 2
#: cores). Histories that need more have an enormous ε anyway; without this
#: guard a tiny σ makes the PRV accountant run for minutes.
PRV_MAX_GRID = 2**22

__all__ = [
    "ACCOUNTANTS",
    "RDP_ORDERS",
    "Accountant",
    "RoundSpend",
    "epsilon_for_history",
    "epsilon_trajectory",
    "noise_multiplier_for_target",
    "plan",
]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


@dataclass(frozen=True)
class RoundSpend:
    """What one round of local DP-SGD costs: σ, Poisson sample rate q, steps."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        sigma, q, steps = self.noise_multiplier, self.sample_rate, self.steps
        if not _is_number(sigma) or not math.isfinite(sigma) or sigma <= 0:
            raise PrivacyError(f"noise_multiplier must be a finite number > 0, got {sigma!r}")
        if not _is_number(q) or not math.isfinite(q) or not 0 < q <= 1:
            raise PrivacyError(f"sample_rate must be in (0, 1], got {q!r}")
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
            raise PrivacyError(f"steps must be an integer >= 0, got {steps!r}")
        # Normalise numpy scalars so histories serialise and compare cleanly.
        object.__setattr__(self, "noise_multiplier", float(sigma))
        object.__setattr__(self, "sample_rate", float(q))
        object.__setattr__(self, "steps", int(steps))

    def as_tuple(self) -> tuple[float, float, int]:
        """The ``(noise_multiplier, sample_rate, steps)`` triple Opacus stores."""
        return (self.noise_multiplier, self.sample_rate, self.steps)


def _check_delta(delta: float) -> float:
    if not _is_number(delta) or not math.isfinite(delta) or not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
    return float(delta)


def _check_accountant(accountant: str) -> Accountant:
    if accountant not in ACCOUNTANTS:
        choices = ", ".join(ACCOUNTANTS)
        raise PrivacyError(f"accountant must be one of {choices}, got {accountant!r}")
    return accountant  # type: ignore[return-value]


def _opacus_history(history: Iterable[RoundSpend]) -> list[tuple[float, float, int]]:
    spends = []
    for spend in history:
        if not isinstance(spend, RoundSpend):
            raise PrivacyError(f"history items must be RoundSpend, got {type(spend).__name__}")
        if spend.steps > 0:
            spends.append(spend.as_tuple())
    return spends


def _prv_grid_estimate(spends: list[tuple[float, float, int]], *, delta: float) -> float:
    """Estimate of the grid size Opacus' PRVAccountant.get_epsilon will allocate.

    Mirrors its defaults (eps_error=0.01, delta_error=delta/1000): the domain
    half-width is at least the RDP ε at delta_error/4 (Opacus may widen it
    further) and the mesh is eps_error / sqrt(steps * log(12 / delta_error) / 2).
    Uses our integer orders, which is faster and within a few % of Opacus' own.
    """
    delta_error = delta / 1000
    rdp = RDPAccountant()
    rdp.history = list(spends)
    half_width = rdp.get_epsilon(delta_error / 4, alphas=list(RDP_ORDERS))
    total_steps = sum(steps for *_, steps in spends)
    mesh = 0.01 / math.sqrt(total_steps * math.log(12 / delta_error) / 2)
    return 2 * half_width / mesh


def _rdp_epsilon(rdp: Any, *, delta: float) -> float:
    with warnings.catch_warnings():
        # "Optimal order is the largest alpha": the bound is valid, just not tight.
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ORDERS), rdp=rdp, delta=delta)
    return float(eps)


def epsilon_for_history(
    history: Sequence[RoundSpend],
    *,
    delta: float,
    accountant: Accountant = "rdp",
) -> float:
    """ε after composing every round in ``history`` at ``delta`` (0.0 if nothing was spent)."""
    delta = _check_delta(delta)
    accountant = _check_accountant(accountant)
    spends = _opacus_history(history)
    if not spends:
        return 0.0
    acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    acc.history = spends
    kwargs: dict[str, Any] = {"alphas": list(RDP_ORDERS)} if accountant == "rdp" else {}
    try:
        # Opacus warns when the optimal RDP order is at the edge of the grid (the
        # bound is still valid) and PRV overflows harmlessly for tiny σ (→ ε = inf).
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", UserWarning)
            if accountant == "prv":
                grid = _prv_grid_estimate(spends, delta=delta)
                if not grid <= PRV_MAX_GRID:
                    raise PrivacyError(
                        f"the prv accountant would need a grid of ~{grid:.2g} points for this "
                        "history (its ε is enormous: too little noise); use the rdp accountant"
                    )
            eps = float(acc.get_epsilon(delta, **kwargs))
    except (ValueError, OverflowError, FloatingPointError, ZeroDivisionError) as err:
        raise PrivacyError(f"{accountant} accountant failed for this history: {err}") from err
    if math.isnan(eps):
        raise PrivacyError(f"{accountant} accountant returned NaN for this history")
    return eps


def epsilon_trajectory(
    history: Sequence[RoundSpend],
    *,
    delta: float,
    accountant: Accountant = "rdp",
) -> list[float]:
    """Cumulative ε after each round of ``history`` (same values as prefix-wise
    :func:`epsilon_for_history`).

    For RDP the per-round RDP curves are summed incrementally in the order
    Opacus sums them, so the result is bit-identical to calling
    :func:`epsilon_for_history` on each prefix but costs O(n) instead of O(n²).
    PRV has no such shortcut and recomputes each prefix.
    """
    delta = _check_delta(delta)
    accountant = _check_accountant(accountant)
    history = list(history)
    _opacus_history(history)  # type check
    if accountant == "prv":
        return [
            epsilon_for_history(history[: i + 1], delta=delta, accountant="prv")
            for i in range(len(history))
        ]
    out: list[float] = []
    total: Any = 0
    spent = False
    for spend in history:
        if spend.steps > 0:
            total = total + rdp_analysis.compute_rdp(
                q=spend.sample_rate,
                noise_multiplier=spend.noise_multiplier,
                steps=spend.steps,
                orders=list(RDP_ORDERS),
            )
            spent = True
        out.append(_rdp_epsilon(total, delta=delta) if spent else 0.0)
    return out


def noise_multiplier_for_target(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: Accountant = "rdp",
    prior_history: Sequence[RoundSpend] = (),
    epsilon_tolerance: float | None = None,
) -> float:
    """The smallest σ (within ``epsilon_tolerance``) such that ``prior_history``
    plus ``steps`` steps at ``sample_rate`` costs at most ``target_epsilon``.

    Without a prior history this is Opacus' ``get_noise_multiplier``. With one
    it is a hand-written bisection over σ, because Opacus cannot account for
    rounds already spent. ``epsilon_tolerance`` (default: 0.1 % of the target,
    at most 0.01) is how far below the target the returned σ may land.
    Raises :class:`PrivacyError` when no σ reaches the target, e.g. when the
    prior history alone already spends it.
    """
    delta = _check_delta(delta)
    accountant = _check_accountant(accountant)
    if not _is_number(target_epsilon) or not math.isfinite(target_epsilon) or target_epsilon <= 0:
        raise PrivacyError(f"target_epsilon must be a finite number > 0, got {target_epsilon!r}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise PrivacyError(f"steps must be an integer >= 1, got {steps!r}")
    RoundSpend(noise_multiplier=1.0, sample_rate=sample_rate, steps=int(steps))  # validate q
    tol = min(0.01, 1e-3 * target_epsilon) if epsilon_tolerance is None else epsilon_tolerance
    if not _is_number(tol) or not tol > 0:
        raise PrivacyError(f"epsilon_tolerance must be > 0, got {tol!r}")

    prior = list(prior_history)
    if not _opacus_history(prior):
        kwargs: dict[str, Any] = {"alphas": list(RDP_ORDERS)} if accountant == "rdp" else {}
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", UserWarning)
                return float(
                    get_noise_multiplier(
                        target_epsilon=float(target_epsilon),
                        target_delta=delta,
                        sample_rate=float(sample_rate),
                        steps=int(steps),
                        accountant=accountant,
                        epsilon_tolerance=tol,
                        **kwargs,
                    )
                )
        except ValueError as err:
            raise PrivacyError(
                f"target ε={target_epsilon} is unreachable with q={sample_rate}, "
                f"{steps} steps, δ={delta}: {err}"
            ) from err

    prior_eps = epsilon_for_history(prior, delta=delta, accountant=accountant)
    if prior_eps >= target_epsilon:
        raise PrivacyError(
            f"target ε={target_epsilon} is unreachable: earlier rounds already spent "
            f"ε={prior_eps:.6g}"
        )

    def eps_at(sigma: float) -> float:
        spend = RoundSpend(noise_multiplier=sigma, sample_rate=sample_rate, steps=int(steps))
        try:
            return epsilon_for_history([*prior, spend], delta=delta, accountant=accountant)
        except PrivacyError:  # PRV refuses hopelessly small σ: treat as "too little noise"
            return math.inf

    # Grow σ until the target is met, then bisect between the last miss and hit.
    sigma_low, sigma_high = 0.0, 1.0
    eps_high = eps_at(sigma_high)
    while eps_high > target_epsilon:
        sigma_low, sigma_high = sigma_high, 2 * sigma_high
        if sigma_high > MAX_NOISE_MULTIPLIER:
            raise PrivacyError(
                f"target ε={target_epsilon} is unreachable: earlier rounds spent "
                f"ε={prior_eps:.6g} and even σ={MAX_NOISE_MULTIPLIER:g} exceeds the target"
            )
        eps_high = eps_at(sigma_high)
    while target_epsilon - eps_high > tol and sigma_high - sigma_low > 1e-9 * sigma_high:
        sigma = (sigma_low + sigma_high) / 2
        eps = eps_at(sigma)
        if eps <= target_epsilon:
            sigma_high, eps_high = sigma, eps
        else:
            sigma_low = sigma
    return sigma_high


def plan(
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    accountant: Accountant = "rdp",
) -> dict[str, Any]:
    """What a training configuration costs, before training (``ecrec privacy plan``).

    Give exactly one of ``noise_multiplier`` (→ the ε it costs) or
    ``target_epsilon`` (→ the σ needed, and the ε that σ actually costs).
    Returns a JSON-ready dict: accountant, sample_rate, steps, delta,
    noise_multiplier, epsilon.
    """
    if (noise_multiplier is None) == (target_epsilon is None):
        raise PrivacyError("give exactly one of noise_multiplier and target_epsilon")
    accountant = _check_accountant(accountant)
    delta = _check_delta(delta)
    if noise_multiplier is None:
        noise_multiplier = noise_multiplier_for_target(
            target_epsilon=target_epsilon,  # type: ignore[arg-type]
            delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=accountant,
        )
    spend = RoundSpend(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
    epsilon = epsilon_for_history([spend], delta=delta, accountant=accountant)
    if not math.isfinite(epsilon):
        raise PrivacyError(
            f"noise_multiplier={spend.noise_multiplier:g} gives no meaningful privacy "
            f"(ε is unbounded under {accountant}); raise the noise or lower the sample rate"
        )
    return {
        "accountant": accountant,
        "sample_rate": spend.sample_rate,
        "steps": spend.steps,
        "delta": delta,
        "noise_multiplier": spend.noise_multiplier,
        "epsilon": epsilon,
    }
