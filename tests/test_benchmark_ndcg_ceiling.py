"""The NDCG-ceiling benchmark's learners: each must be able to learn an order that is there
(otherwise its "no method beats zero-shot" row would prove nothing), and its CLI must refuse
a folder that is not an import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.ndcg_ceiling import _listnet, fit_head
from ecrec.metrics.ranking import per_query_metrics

ROOT = Path(__file__).resolve().parents[1]


def _market(seed: int = 0, queries: int = 60, per_query: int = 8) -> tuple[np.ndarray, ...]:
    """Feature 1 decides relevance within each query; feature 0 is a per-query offset (it
    moves scores across queries, never the order within one) and feature 2 is noise."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(queries), per_query)
    signal = rng.normal(size=groups.size)
    offset = rng.normal(size=queries)[groups] * 3
    features = np.column_stack([offset, signal, rng.normal(size=groups.size)])
    relevance = np.clip(np.round(2 + signal), 1, 3)
    return features, relevance, groups


def _ndcg(relevance: np.ndarray, groups: np.ndarray, scores: np.ndarray) -> float:
    return float(
        per_query_metrics(
            query_ids=groups, labels=(relevance >= 2.5).astype(float), scores=scores,
            relevance=relevance,
        )["ndcg"].mean()
    )  # fmt: skip


@pytest.mark.parametrize(
    ("loss", "hidden"), [("pointwise", 0), ("pairwise", 0), ("listwise", 0), ("pairwise", 16)]
)
def test_every_head_learns_an_order_that_is_there(loss: str, hidden: int) -> None:
    features, relevance, groups = _market()
    test_x, test_rel, test_groups = _market(seed=1)
    head = fit_head(features, relevance, groups, loss=loss, hidden=hidden)
    learnt = _ndcg(test_rel, test_groups, head(test_x))
    noise = _ndcg(test_rel, test_groups, test_x[:, 2])
    perfect = _ndcg(test_rel, test_groups, test_rel)
    assert learnt > noise + 0.05 and learnt > perfect - 0.02, (learnt, noise, perfect)


def test_listnet_prefers_the_right_order_within_each_query() -> None:
    import torch

    groups = torch.tensor([0, 0, 0, 1, 1])
    relevance = torch.tensor([3.0, 2.0, 1.0, 1.0, 3.0])
    right = _listnet(torch.tensor([2.0, 1.0, 0.0, 0.0, 2.0]), relevance, groups)
    wrong = _listnet(torch.tensor([0.0, 1.0, 2.0, 2.0, 0.0]), relevance, groups)
    shifted = _listnet(torch.tensor([12.0, 11.0, 10.0, -5.0, -3.0]), relevance, groups)
    assert right < wrong
    assert torch.isclose(right, shifted)  # a per-query shift changes no query's order
    # A query whose products are all irrelevant (relevance 0: no gain) has no target: it
    # must neither poison the loss with NaN (it did, on the full Home Depot file) nor count.
    with_empty = _listnet(
        torch.tensor([2.0, 1.0, 0.0, 0.0, 2.0, 5.0, 1.0]),
        torch.cat([relevance, torch.tensor([0.0, 0.0])]),
        torch.cat([groups, torch.tensor([2, 2])]),
    )
    assert torch.isclose(with_empty, right)


def test_a_folder_that_is_not_an_import_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ndcg_ceiling", "--data", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "no manifest.json" in done.stderr
    assert "Traceback" not in done.stderr
