"""The privacy benchmarks (issue 11.3 and 11.4) run end to end on small sizes.

Each runs Flower simulations (minutes on 2 cores): slow. Figures are not checked
against targets (the machine may be busy, and --quick sizes do not memorise); only
that every number a reader relies on is there and sane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=1500, check=False,
    )  # fmt: skip


def test_privacy_audit_quick_audits_three_mirrored_pairs(tmp_path: Path) -> None:
    out = tmp_path / "audit.json"
    work = tmp_path / "work"
    done = _run("benchmarks.privacy_audit", "--quick", "--out", str(out), "--work", str(work))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert list(results) == ["non-private", "ε = 8", "ε = 1"]
    assert not results["non-private"]["dp"] and "epsilon" not in results["non-private"]["privacy"]
    for name in ("ε = 8", "ε = 1"):
        privacy = results[name]["privacy"]
        assert privacy["accountant"] == "pld" and privacy["epsilon"] <= float(name[4:])
    for result in results.values():
        for attack in result["attacks"].values():
            assert 0 <= attack["auc"] <= 1 and attack["auc_ci"][0] <= attack["auc_ci"][1]
            assert attack["paired"]  # every row on both sides
        assert result["canaries"]["final"]["canaries"] == 8
        assert result["pairing"]["mirror_canaries"]["final"]["canaries"] == 8
        assert result["pairing"]["mirror_run"].startswith(str(work / "run-b-"))
    assert "AUC loss (paired)" in done.stdout


def test_accountant_gain_calibrates_both_ways_and_runs_both(tmp_path: Path) -> None:
    out = tmp_path / "gain.json"
    done = _run("benchmarks.accountant_gain", "--rounds", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    (only,) = json.loads(out.read_text())["datasets"].values()
    for row in only["calibration"].values():
        assert row["old"]["epsilon_old_rdp"] <= 8.0 and row["new"]["epsilon_pld"] <= 8.0
        assert row["new"]["sigma"] <= row["old"]["sigma"]  # the tight accountant: less noise
    for run in only["runs"].values():
        assert 0 <= run["final_ndcg@10"] <= 1 and 0 <= run["final_auc"] <= 1
    assert "NDCG@10" in done.stdout


def test_accountant_gain_refuses_a_data_folder_that_is_not_an_import(tmp_path: Path) -> None:
    done = _run("benchmarks.accountant_gain", "--data", str(tmp_path))
    assert done.returncode == 2 and "no manifest.json" in done.stderr
    assert "Traceback" not in done.stderr
