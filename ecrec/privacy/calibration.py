"""σ calibration: the smallest noise whose ε is within a tolerance below a target, and
:func:`plan` (what a training configuration costs, before training)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ecrec.errors import PrivacyError
from ecrec.privacy.epsilon import epsilon_for_history
from ecrec.privacy.spend import Accountant, RoundSpend, _check_accountant, _check_delta, _is_number

#: Largest noise multiplier the searches try before declaring a target unreachable.
MAX_NOISE_MULTIPLIER = 1e6


def _search_sigma(
    eps_at: Callable[[float], float], *, target: float, tolerance: float, start: float
) -> float:
    """The σ whose ε lies in [target − tolerance, target], assuming ε falls as σ grows.

    Hand-written, because scipy's bracketing root finders stop on a σ tolerance,
    not on this one-sided ε window. Secant steps on (log σ, log ε) through the
    last two evaluations (ε is close to a power of σ there), kept inside the
    bracket found so far, with a bisection whenever the same end of the bracket
    moves three times in a row (so the bracket keeps shrinking). If ε never
    reaches the window (it stays below it down to the smallest σ the accountant
    will evaluate), the smallest feasible σ found is returned. Raises
    PrivacyError when even :data:`MAX_NOISE_MULTIPLIER` overshoots.
    """
    aim = math.log(target - tolerance / 2)
    low: tuple[float, float] | None = None  # (σ, ε) with ε > target
    high: tuple[float, float] | None = None  # (σ, ε) with ε <= target
    last: list[tuple[float, float]] = []  # the last two evaluations
    last_end, repeats = "", 0  # which end moved last, and how many times in a row
    sigma = start
    for _ in range(200):
        eps = eps_at(sigma)
        end = "high" if eps <= target else "low"
        if end == "high" and eps >= target - tolerance:
            return sigma
        if end == "high":
            high = (sigma, eps)
        else:
            low = (sigma, eps)
        repeats = repeats + 1 if end == last_end else 1
        last_end = end
        last = [*last[-1:], (sigma, eps)]
        if low is not None and low[0] >= MAX_NOISE_MULTIPLIER:
            raise PrivacyError(f"even σ={MAX_NOISE_MULTIPLIER:g} exceeds the target")
        usable = [(math.log(x), math.log(y)) for x, y in last if 0 < y < math.inf]
        if len(usable) == 2 and usable[0][0] != usable[1][0] and usable[0][1] != usable[1][1]:
            (u0, v0), (u1, v1) = usable
            log_step = (aim - v1) * (u1 - u0) / (v1 - v0)
        elif 0 < eps < math.inf:  # one point: assume ε ∝ σ^-2, typical near the answer
            log_step = (math.log(eps) - aim) / 2
        else:
            log_step = math.log(2.0 if eps > target else 0.5)
        # At most 4x per step (a flat stretch of ε would send the secant far away).
        guess = sigma * math.exp(min(max(log_step, -math.log(4)), math.log(4)))
        if high is None:  # not enough noise yet: go up
            sigma = min(max(guess, 1.001 * sigma), MAX_NOISE_MULTIPLIER)
        elif low is None:  # more noise than needed so far: go down
            sigma = min(guess, 0.999 * sigma)
        else:
            x_low, x_high = low[0], high[0]
            # Where the accountant refuses smaller σ (ε = inf below) and ε stays under the
            # window above (e.g. δ >= q: ε = 0 for every σ), the window cannot be hit:
            # stop within 0.1 % of that edge. Otherwise ε jumps across the window.
            width = 1e-3 if low[1] == math.inf else 1e-12
            if x_high / x_low - 1 <= width:
                return x_high  # the feasible end
            bisect = repeats >= 3 or not x_low < guess < x_high
            sigma = math.sqrt(x_low * x_high) if bisect else guess
            repeats = 0 if bisect else repeats
    assert high is not None
    return high[0]


def noise_multiplier_for_target(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: Accountant = "pld",
    prior_history: Sequence[RoundSpend] = (),
    epsilon_tolerance: float | None = None,
) -> float:
    """The smallest σ (within ``epsilon_tolerance``) such that ``prior_history``
    plus ``steps`` steps at ``sample_rate`` costs at most ``target_epsilon``.

    The ε at the returned σ lies in ``[target − tolerance, target]``: never
    above the target (below the window only where no σ the accountant can
    evaluate gets ε that high, e.g. δ ≥ q, where ε = 0 for every σ).
    ``epsilon_tolerance`` defaults to 0.1 % of the target (at most 0.01). For
    PLD and PRV the search starts from the (cheap) RDP answer.
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
    target = float(target_epsilon)
    tol = min(0.01, 1e-3 * target) if epsilon_tolerance is None else epsilon_tolerance
    if not _is_number(tol) or not 0 < tol < target:
        raise PrivacyError(f"epsilon_tolerance must be in (0, target_epsilon), got {tol!r}")

    prior = list(prior_history)
    prior_eps = epsilon_for_history(prior, delta=delta, accountant=accountant)
    if prior_eps >= target:
        raise PrivacyError(
            f"target ε={target:g} is unreachable: earlier rounds already spent "
            f"ε={prior_eps:.6g} ({accountant})"
        )

    def eps_at(sigma: float) -> float:
        spend = RoundSpend(noise_multiplier=sigma, sample_rate=sample_rate, steps=int(steps))
        try:
            return epsilon_for_history([*prior, spend], delta=delta, accountant=accountant)
        except PrivacyError:  # PLD/PRV refuse hopelessly small σ: "too little noise"
            return math.inf

    start = 1.0
    if accountant != "rdp":
        # RDP bounds PLD/PRV from above, so its σ is a close, usually feasible start.
        with contextlib.suppress(PrivacyError):
            start = noise_multiplier_for_target(
                target_epsilon=target,
                delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant="rdp",
                prior_history=prior,
                epsilon_tolerance=0.01 * target,
            )
    try:
        return _search_sigma(eps_at, target=target, tolerance=tol, start=start)
    except PrivacyError as err:
        raise PrivacyError(
            f"target ε={target:g} is unreachable with q={sample_rate}, {steps} steps, "
            f"δ={delta} ({accountant}, earlier rounds ε={prior_eps:.6g}): {err}"
        ) from err


def plan(
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    accountant: Accountant = "pld",
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
