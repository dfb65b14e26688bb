"""ε under ecrec's accountants against Google's dp_accounting (issue 11's table, regenerated).

For each configuration (Poisson rate q, noise multiplier σ, steps, δ) this prints:

* ``old rdp``: what ecrec printed before issue 11: Opacus RDP at integer orders only;
* ``rdp``: ecrec's RDP cross-check now: Opacus RDP over the full fractional grid;
* ``pld``: ecrec's default now (dp_accounting PLD, pessimistic, grid 1e-4);
* ``dpacc rdp`` / ``dpacc pld``: dp_accounting's own RdpAccountant (its default
  orders) and PLDAccountant (its defaults), fed the same events;
* ``prv``: Opacus' PRV accountant (upper end, eps_error 0.01), an independent
  numerical composition;
* seconds for ecrec's PLD value (cold caches).

A last row composes a five-round history with a different σ per round, and a
second table shows what the exact sampling rate changes for n=100, B=32.

Run ``python -m benchmarks.accounting``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import dp_accounting
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from opacus.accountants.analysis import rdp as opacus_rdp

from ecrec.privacy import pld as pld_cache
from ecrec.privacy.accounting import RoundSpend, epsilon_for_history
from ecrec.train.local import TrainConfig, plan_round

#: The integer orders ecrec's RDP used before issue 11.
OLD_INTEGER_ORDERS = [*range(2, 64), 80, 96, 128, 192, 256, 384, 512, 1024]

#: (q, σ, steps, δ): issue 11's three rows, then a few more.
CONFIGURATIONS = [
    (0.02, 0.7, 120, 1e-5),
    (0.05, 1.3, 300, 1e-6),
    (0.004, 0.9, 2500, 1e-5),
    (0.01, 1.0, 1000, 1e-5),
    (0.25, 1.5, 40, 1e-5),
    (0.1, 2.0, 500, 1e-6),
    (0.001, 0.8, 10_000, 1e-6),
    (0.3, 4.0, 2000, 1e-8),
]

#: Five rounds with different σ (and one idle round), composed as the ledger does.
MULTI_ROUND = [
    RoundSpend(noise_multiplier=1.0, sample_rate=0.02, steps=100),
    RoundSpend(noise_multiplier=1.2, sample_rate=0.02, steps=100),
    RoundSpend(noise_multiplier=0.9, sample_rate=0.05, steps=50),
    RoundSpend(noise_multiplier=1.0, sample_rate=0.02, steps=0),
    RoundSpend(noise_multiplier=1.5, sample_rate=0.02, steps=200),
]


def _events(history: list[RoundSpend]):
    for spend in history:
        if spend.steps:
            gaussian = dp_accounting.GaussianDpEvent(spend.noise_multiplier)
            yield dp_accounting.PoissonSampledDpEvent(spend.sample_rate, gaussian), spend.steps


def dp_accounting_epsilons(history: list[RoundSpend], delta: float) -> tuple[float, float]:
    """dp_accounting's RDP (default orders) and PLD (default grid) ε, round by round."""
    rdp, pld = RdpAccountant(), PLDAccountant()
    for event, count in _events(history):
        rdp.compose(event, count)
        pld.compose(event, count)
    return rdp.get_epsilon(delta), pld.get_epsilon(delta)


def old_integer_rdp(history: list[RoundSpend], delta: float) -> float:
    total = sum(
        opacus_rdp.compute_rdp(
            q=s.sample_rate, noise_multiplier=s.noise_multiplier, steps=s.steps,
            orders=OLD_INTEGER_ORDERS,
        )
        for s in history
        if s.steps
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = opacus_rdp.get_privacy_spent(orders=OLD_INTEGER_ORDERS, rdp=total, delta=delta)
    return float(eps)


def row(label: str, history: list[RoundSpend], delta: float) -> str:
    pld_cache._round_pld.cache_clear()  # time the PLD from cold caches
    pld_cache._PLD_PREFIXES = pld_cache._PrefixCache(size=4)
    started = time.perf_counter()
    pld = epsilon_for_history(history, delta=delta, accountant="pld")
    seconds = time.perf_counter() - started
    rdp = epsilon_for_history(history, delta=delta, accountant="rdp")
    prv = epsilon_for_history(history, delta=delta, accountant="prv")
    google_rdp, google_pld = dp_accounting_epsilons(history, delta)
    cells = [old_integer_rdp(history, delta), rdp, pld, google_rdp, google_pld, prv]
    values = " | ".join(f"{x:.3f}" for x in cells)
    return f"| {label} | {delta:g} | {values} | {seconds:.2f} |"


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp_accounting's RDP chatter
    columns = ["old rdp", "rdp", "pld (default)", "dpacc rdp", "dpacc pld", "prv", "pld s"]
    print("| q, σ, steps | δ | " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for q, sigma, steps, delta in CONFIGURATIONS:
        spend = RoundSpend(noise_multiplier=sigma, sample_rate=q, steps=steps)
        print(row(f"{q:g}, {sigma:g}, {steps}", [spend], delta), flush=True)
    print(row("5 rounds, σ 0.9-1.5", MULTI_ROUND, 1e-5), flush=True)

    n, batch = 100, 32
    exact, steps = plan_round(n, TrainConfig(batch_size=batch, local_epochs=10.0))
    print(f"\nSampling rate for n={n}, B={batch}, 10 epochs ({steps} steps, σ=1, δ=1e-5):\n")
    print("| rate | q | pld ε |")
    print("|---|---|---|")
    for label, q in (("B / n (before)", batch / n), ("1 / ceil(n / B) (Opacus, now)", exact)):
        spend = RoundSpend(noise_multiplier=1.0, sample_rate=q, steps=steps)
        print(f"| {label} | {q:g} | {epsilon_for_history([spend], delta=1e-5):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
