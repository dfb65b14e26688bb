"""The benchmark entry points run end to end on --quick sizes and write sane JSON.

Figures are not checked against targets here (the machine may be busy); only
that each benchmark produces every key a reader relies on, with positive
throughputs and ratios. The speed run skips its two Flower simulations to keep
this under a few minutes; the simulation path is covered by the federation
tests and by ``python -m benchmarks.speed --quick``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _check_machine(payload: dict, module: str) -> None:
    machine = payload["machine"]
    for key in ("cpu_model", "cpu_cores", "torch_version", "date", "command"):
        assert machine[key], f"machine.{key} is empty"
    assert module in machine["command"]


@pytest.mark.slow
def test_speed_quick_writes_throughputs_ratios_and_bytes(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    done = _run("benchmarks.speed", "--quick", "--no-simulations", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "samples/s" in done.stdout and "pairs/s" in done.stdout
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "speed"
    _check_machine(payload, "benchmarks.speed")
    assert payload["settings"]["model"] == "tiny"
    training = payload["training"]
    assert set(training) == {"lora", "dp-hooks", "dp-ghost"}
    for name, entry in training.items():
        assert _positive(entry["samples_per_second"]), name
        assert _positive(entry["step_ms"]), name
    for name in ("dp-hooks", "dp-ghost"):
        assert _positive(training[name]["step_ratio_vs_lora"]), name
    dp = payload["dp"]
    assert dp["best_dp_mode"] in {"dp-hooks", "dp-ghost"}
    assert _positive(dp["best_dp_step_ratio"])
    assert dp["verdict"] in {"PASS", "MISS"}
    inference = payload["inference"]
    assert _positive(inference["model_fp32_pairs_per_second"])
    assert _positive(inference["score_end_to_end_pairs_per_second"])
    size = payload["bytes"]
    assert 0 < size["adapter_bytes"] < size["secagg_upload_bytes"] < size["full_model_bytes"]
    assert 0 < size["secagg_percent_of_full"] < 100
    assert "simulation" not in payload


@pytest.mark.slow
def test_quality_runs_every_row_through_the_product_and_reports_cis(tmp_path: Path) -> None:
    """The quality benchmark on a tiny synthetic marketplace: every baseline and trained
    row present, federated rows from real ``ecrec simulate`` run folders (sealed ledgers),
    CIs that bracket their means, and a paired comparison per baseline."""
    out, work = tmp_path / "quality.json", tmp_path / "work"
    done = _run(
        "benchmarks.quality", "--base-model", "tiny", "--rounds", "1", "--seeds", "0",
        "--epsilons", "8", "--no-cross-encoder", "--bootstrap", "30", "--bi-encoder",
        "--work", str(work), "--out", str(out), timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "quality"
    _check_machine(payload, "benchmarks.quality")
    rows = payload["rows"]
    for name in (
        "random scores",
        "character TF-IDF (query vs title)",
        "BM25 (query vs title)",
        "zero-shot bi-encoder (MiniLM cosine)",
        "centralised, non-private",
        "federated, non-private",
        "federated DP ε=8",
        "alone: mean of merchants",
        "alone: best merchant",
        "federated bi-encoder (LoRA) DP ε=8",
    ):
        assert name in rows, f"missing row {name!r}"
    for name, row in rows.items():
        for metric in ("ndcg", "mrr", "auc"):
            lo, hi = row[metric]["ci"]
            assert 0 <= lo <= hi <= 1 and 0 <= row[metric]["mean"] <= 1, (name, metric, row)
    assert rows["random scores"]["lift"]["mean"] == 0
    assert set(payload["comparisons"]) >= {"BM25 (query vs title)", "alone: best merchant"}
    assert [t["verdict"] in {"PASS", "MISS"} for t in payload["targets"]] == [True] * 6
    assert out.with_suffix(".md").read_text().startswith("| run | NDCG@10 |")
    # The federated rows are production run folders: the nodes' sealed ledgers spent ε.
    from ecrec.federation.simulation import ledger_summaries

    for run in ("run-seed0-eps8", "run-seed0-bi-encoder"):
        spent = ledger_summaries(work / run / "nodes.toml")
        assert spent and all(0 < s["spent"] <= 8 for s in spent.values()), (run, spent)
    bi_config = (work / "run-seed0-bi-encoder" / "config.toml").read_text()
    assert 'architecture = "bi-encoder"' in bi_config
    assert set(payload["bi_encoder_comparisons"]) == {
        "zero-shot bi-encoder (MiniLM cosine)", "federated DP ε=8",
        "character TF-IDF (query vs title)",
    }  # fmt: skip


def test_gpu_script_refuses_clearly_without_cuda(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal path is for CPU-only machines")
    out = tmp_path / "gpu.json"
    done = _run("benchmarks.gpu", "--out", str(out), timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "CUDA is not available" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
