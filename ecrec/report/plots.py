"""Matplotlib figures for reports, returned as PNG bytes (Agg backend, no display)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def metric_curves(records: Sequence[Mapping[str, Any]], *, metrics: Sequence[str]) -> bytes:
    """Global metrics per round (round 0 = before training)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    rounds = [r["round"] for r in records]
    for name in metrics:
        values = [r.get(name) for r in records]
        ax.plot(rounds, [float("nan") if v is None else v for v in values], marker="o", label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("score on the pooled validation shard")
    ax.set_xticks(rounds)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def per_merchant_curves(records: Sequence[Mapping[str, Any]], *, key: str) -> bytes:
    """NDCG of the global model on each merchant's validation queries, per round."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    merchants = sorted({m for r in records for m in r.get(key, {})})
    rounds = [r["round"] for r in records]
    for merchant in merchants:
        values = [r.get(key, {}).get(merchant) for r in records]
        ax.plot(
            rounds, [float("nan") if v is None else v for v in values], marker=".", label=merchant
        )
    ax.set_xlabel("round")
    ax.set_ylabel(key.replace("per_merchant_", ""))
    ax.set_xticks(rounds)
    ax.grid(alpha=0.3)
    if merchants:
        ax.legend(ncol=2, fontsize="small")
    return _png(fig)


def privacy_curves(merchants: Mapping[str, Mapping[str, Any]], *, accountant: str) -> bytes:
    """Cumulative ε per merchant from round 0 (solid: configured accountant,
    dashed: the other one, dotted: the merchant's budget)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    all_rounds = {0}
    for index, (merchant, info) in enumerate(sorted(merchants.items())):
        color = f"C{index % 10}"
        rows = info["rounds"]
        rounds = [0, *(r["round"] for r in rows)]
        all_rounds.update(rounds)
        ax.plot(
            rounds, [0.0, *(r["epsilon"] for r in rows)], marker="o", color=color, label=merchant
        )
        other = [r.get("epsilon_other") for r in rows]
        if all(v is not None for v in other):
            ax.plot(rounds, [0.0, *other], linestyle="--", color=color, alpha=0.6)
        budget = info.get("budget_epsilon")
        if budget:
            ax.axhline(budget, color=color, linestyle=":", alpha=0.5)
    ax.set_title(f"solid: {accountant}, dashed: other accountant, dotted: budget", fontsize="small")
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative ε")
    ax.set_xticks(sorted(all_rounds))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if merchants:
        ax.legend(fontsize="small")
    return _png(fig)
