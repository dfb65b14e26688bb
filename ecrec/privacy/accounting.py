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
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from dp_accounting.pld import privacy_loss_mechanism
from opacus.accountants import PRVAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

from ecrec.errors import PrivacyError

Accountant = Literal["pld", "rdp", "prv"]
#: Every accountant, the default first.
ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp", "prv")

#: RDP orders: Opacus' default fractional orders (written as Opacus and dp_accounting
#: write them, so the floats are identical), every integer 11..63, and a long tail.
RDP_ORDERS: tuple[float, ...] = (
    *(1 + x / 10.0 for x in range(1, 100)),
    *map(float, range(11, 64)),
    80.0,
    96.0,
    128.0,
    192.0,
    256.0,
    384.0,
    512.0,
    1024.0,
)

#: Privacy-loss grid interval of the PLD accountant (see the module docstring).
PLD_DISCRETIZATION = 1e-4

#: Largest one-round PLD grid we let dp_accounting build (a Python loop over the
#: points: about 4 s at 2**20). Needs it only when σ is far below 0.5.
PLD_MAX_ROUND_GRID = 2**20

#: Largest composed PLD grid we let dp_accounting build (estimated from the RDP ε
#: at δ = 1e-15, the tail it keeps; ~70 MB and several seconds at 2**23). Only
#: histories with an ε in the hundreds need more.
PLD_MAX_GRID = 2**23

#: Largest PRV discretisation grid we let Opacus build (~15 s and ~1 GB on 2
#: cores). Histories that need more have an enormous ε anyway; without this
#: guard a tiny σ makes the PRV accountant run for minutes.
PRV_MAX_GRID = 2**22

#: Largest noise multiplier the searches try before declaring a target unreachable.
MAX_NOISE_MULTIPLIER = 1e6

#: The tail mass dp_accounting truncates when composing (its default).
_PLD_TAIL_DELTA = 1e-15

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
        # Normalise numpy scalars so histories serialise, hash and compare cleanly.
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


def _spent_rounds(history: Iterable[RoundSpend]) -> tuple[RoundSpend, ...]:
    """The rounds that spend something, type-checked."""
    spends = []
    for spend in history:
        if not isinstance(spend, RoundSpend):
            raise PrivacyError(f"history items must be RoundSpend, got {type(spend).__name__}")
        if spend.steps > 0:
            spends.append(spend)
    return tuple(spends)


# --------------------------------------------------------------------------- #
# RDP (Opacus)
# --------------------------------------------------------------------------- #


@lru_cache(maxsize=256)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """One step's RDP curve at :data:`RDP_ORDERS` (read-only; Opacus scales it by steps)."""
    curve = np.asarray(
        rdp_analysis.compute_rdp(
            q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(RDP_ORDERS)
        ),
        dtype=float,
    )
    curve.setflags(write=False)
    return curve


def _rdp_curve(spend: RoundSpend) -> np.ndarray:
    # Opacus' compute_rdp is the one-step curve times steps: same floats.
    return _rdp_per_step(spend.noise_multiplier, spend.sample_rate) * spend.steps


def _rdp_to_epsilon(curve: np.ndarray, *, delta: float) -> float:
    with warnings.catch_warnings():
        # "Optimal order is the largest alpha": the bound is valid, just not tight.
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ORDERS), rdp=curve, delta=delta)
    return max(0.0, float(eps))


def _rdp_epsilon(spends: Sequence[RoundSpend], *, delta: float) -> float:
    total = sum((_rdp_curve(spend) for spend in spends), start=np.zeros(len(RDP_ORDERS)))
    return _rdp_to_epsilon(total, delta=delta)


# --------------------------------------------------------------------------- #
# PLD (dp_accounting)
# --------------------------------------------------------------------------- #

_Pld = pld_lib.PrivacyLossDistribution


def _check_round_grid(spend: RoundSpend) -> None:
    """Refuse a round whose one-step PLD grid would take long to build."""
    widest = 0.0
    for adjacency in (
        privacy_loss_mechanism.AdjacencyType.REMOVE,
        privacy_loss_mechanism.AdjacencyType.ADD,
    ):
        bounds = privacy_loss_mechanism.GaussianPrivacyLoss(
            spend.noise_multiplier, sampling_prob=spend.sample_rate, adjacency_type=adjacency
        ).connect_dots_bounds()
        widest = max(widest, bounds.epsilon_upper - bounds.epsilon_lower)  # type: ignore[operator]
    points = widest / PLD_DISCRETIZATION
    if not points <= PLD_MAX_ROUND_GRID:
        raise PrivacyError(
            f"the pld accountant would need a grid of ~{points:.2g} points for a round with "
            f"σ={spend.noise_multiplier:g}, q={spend.sample_rate:g} (too little noise: its ε "
            "is enormous); use the rdp accountant"
        )


def _check_history_grid(spends: Sequence[RoundSpend]) -> None:
    """Refuse a history whose composed PLD grid would be huge (ε in the hundreds)."""
    points = _rdp_epsilon(spends, delta=_PLD_TAIL_DELTA) / PLD_DISCRETIZATION
    if not points <= PLD_MAX_GRID:
        raise PrivacyError(
            f"the pld accountant would need a grid of ~{points:.2g} points for this history "
            "(too little noise: its ε is enormous); use the rdp accountant"
        )


@lru_cache(maxsize=4)
def _round_pld(spend: RoundSpend) -> _Pld:
    """One round's PLD: what PLDAccountant composes for ``steps`` Poisson-sampled Gaussians."""
    _check_round_grid(spend)
    one_step = pld_lib.from_gaussian_mechanism(
        standard_deviation=spend.noise_multiplier,
        sampling_prob=spend.sample_rate,
        value_discretization_interval=PLD_DISCRETIZATION,
        pessimistic_estimate=True,
    )
    return one_step.self_compose(spend.steps)


class _PrefixCache:
    """The last few composed histories, so that a history plus one round composes one round.

    Composition is always a left fold from the identity in history order, so a
    history's PLD is the same object however it was reached (bit-identical ε).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[RoundSpend, ...], _Pld] = OrderedDict()
        self._lock = threading.Lock()

    def longest_prefix(self, spends: tuple[RoundSpend, ...]) -> tuple[int, _Pld | None]:
        with self._lock:
            best: tuple[int, _Pld | None] = (0, None)
            for key, value in self._entries.items():
                if best[0] < len(key) <= len(spends) and spends[: len(key)] == key:
                    best = (len(key), value)
            if best[1] is not None:
                self._entries.move_to_end(spends[: best[0]])
            return best

    def put(self, spends: tuple[RoundSpend, ...], value: _Pld) -> None:
        with self._lock:
            self._entries[spends] = value
            self._entries.move_to_end(spends)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_PLD_PREFIXES = _PrefixCache(size=4)


def _compose_plds(spends: tuple[RoundSpend, ...], *, every_round: bool) -> list[_Pld]:
    """The composed PLD of ``spends``, or (``every_round``) the PLD after each of its rounds.

    Without ``every_round`` the composition starts from the longest cached prefix.
    """
    start, composed = (0, None) if every_round else _PLD_PREFIXES.longest_prefix(spends)
    if start == len(spends) and composed is not None:
        return [composed]
    _check_history_grid(spends)
    if composed is None:
        composed = pld_lib.identity(value_discretization_interval=PLD_DISCRETIZATION)
    out = []
    for spend in spends[start:]:
        composed = composed.compose(_round_pld(spend))
        out.append(composed)
    _PLD_PREFIXES.put(spends, composed)
    return out


def _pld_epsilon(composed: _Pld, *, delta: float) -> float:
    return float(composed.get_epsilon_for_delta(delta))


# --------------------------------------------------------------------------- #
# PRV (Opacus)
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def _guarded(accountant: str, compute: Callable[[], Any]) -> Any:
    """Run a library computation; its numerical failures become one-line PrivacyErrors."""
    try:
        # Opacus warns when the optimal RDP order is at the edge of the grid (the bound
        # is still valid); PRV/PLD overflow harmlessly for tiny σ (→ ε = inf).
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", UserWarning)
            return compute()
    except (ValueError, OverflowError, FloatingPointError, ZeroDivisionError) as err:
        raise PrivacyError(f"{accountant} accountant failed for this history: {err}") from err


def _checked(accountant: str, eps: float) -> float:
    if math.isnan(eps):
        raise PrivacyError(f"{accountant} accountant returned NaN for this history")
    return eps


def epsilon_for_history(
    history: Sequence[RoundSpend],
    *,
    delta: float,
    accountant: Accountant = "pld",
) -> float:
    """ε after composing every round in ``history`` at ``delta`` (0.0 if nothing was spent)."""
    delta = _check_delta(delta)
    accountant = _check_accountant(accountant)
    spends = _spent_rounds(history)
    if not spends:
        return 0.0
    if accountant == "pld":
        last = lambda: _compose_plds(spends, every_round=False)[-1]  # noqa: E731
        eps = _guarded("pld", lambda: _pld_epsilon(last(), delta=delta))
    elif accountant == "rdp":
        eps = _guarded("rdp", lambda: _rdp_epsilon(spends, delta=delta))
    else:
        eps = _guarded("prv", lambda: _prv_epsilon(spends, delta=delta))
    return _checked(accountant, eps)


def epsilon_trajectory(
    history: Sequence[RoundSpend],
    *,
    delta: float,
    accountant: Accountant = "pld",
) -> list[float]:
    """Cumulative ε after each round of ``history`` (the same values as
    :func:`epsilon_for_history` on each prefix).

    PLD and RDP compose incrementally, round by round, in the order
    :func:`epsilon_for_history` composes, so the values are bit-identical and
    the cost is one composition per round. PRV has no such shortcut and
    recomputes each prefix.
    """
    delta = _check_delta(delta)
    accountant = _check_accountant(accountant)
    history = list(history)
    spends = _spent_rounds(history)
    if accountant == "prv":
        return [
            epsilon_for_history(history[: i + 1], delta=delta, accountant="prv")
            for i in range(len(history))
        ]
    per_spend: list[float]
    if accountant == "pld":
        per_spend = _guarded(
            "pld",
            lambda: [
                _pld_epsilon(composed, delta=delta)
                for composed in _compose_plds(spends, every_round=True)
            ],
        )
    else:
        per_spend = []
        total = np.zeros(len(RDP_ORDERS))
        for spend in spends:
            total = total + _rdp_curve(spend)
            per_spend.append(_guarded("rdp", lambda t=total: _rdp_to_epsilon(t, delta=delta)))
    out: list[float] = []
    done = 0
    for spend in history:
        done += spend.steps > 0
        out.append(_checked(accountant, per_spend[done - 1]) if done else 0.0)
    return out


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
