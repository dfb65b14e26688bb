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
def test_quality_quick_scores_every_baseline_and_judges_targets(tmp_path: Path) -> None:
    out = tmp_path / "quality.json"
    done = _run("benchmarks.quality", "--quick", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "quality targets" in done.stdout
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "quality"
    _check_machine(payload, "benchmarks.quality")
    runs = {run["name"]: run for run in payload["runs"]}
    assert {run["group"] for run in runs.values()} == set("abcdefg")
    for name in (
        "zero-shot bi-encoder",
        "untrained",
        "centralised non-private",
        "federated non-private",
        "federated DP ε=1",
        "federated DP ε=4",
        "federated DP ε=8",
        "federated FFA-LoRA DP ε=1",
        "federated FFA-LoRA DP ε=8",
    ):
        assert name in runs, f"missing run {name!r}"
    for name, run in runs.items():
        assert 0 <= run["metrics"]["ndcg@10"] <= 1, name
        assert 0 <= run["metrics"]["mrr@10"] <= 1, name
    merchants = payload["dataset"]["merchant_rows"]
    assert len([r for r in runs.values() if r["group"] == "c"]) == len(merchants) == 3
    # Same number of samples seen: centralised = federated = merchants x local-only.
    central = runs["centralised non-private"]["samples"]
    assert central == pytest.approx(runs["federated non-private"]["samples"])
    local = [r["samples"] for r in runs.values() if r["group"] == "c"]
    assert central == pytest.approx(sum(local))
    for name in ("federated DP ε=1", "federated DP ε=8"):
        sigmas = runs[name]["sigma"]
        assert set(sigmas) == set(merchants) and all(_positive(s) for s in sigmas.values())
    assert runs["federated DP ε=1"]["sigma"]["m00"] > runs["federated DP ε=8"]["sigma"]["m00"]
    assert [t["verdict"] in {"PASS", "MISS"} for t in payload["targets"]] == [True] * 3
    assert "FedAvg" in payload["method"]


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
