"""benchmarks.scaling: its memory probe measures what it claims, and the benchmark runs.

The fast test checks the probe against processes of known size; the slow one runs the
benchmark end to end on the smallest sizes (one 4-merchant simulation with the dropout
scenario, and ``ecrec simulate`` for one round) and checks every key a reader relies on.
Figures are not judged here: the machine may be busy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scaling import effective_shares, measured, scaling_config

ROOT = Path(__file__).resolve().parents[1]
_HOG = "import time; block = bytearray({mb} * 1024 * 1024); time.sleep(1.5)"
_PARENT = (
    "import subprocess, sys; "
    f"child = subprocess.Popen([sys.executable, '-c', {_HOG.format(mb=150)!r}]); "
    f"exec({_HOG.format(mb=100)!r}); child.wait()"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_memory_probe_sees_the_whole_process_tree(tmp_path: Path) -> None:
    memory = measured(
        [sys.executable, "-c", _PARENT], run_dir=tmp_path, log=tmp_path / "log", timeout=60
    )
    assert memory["processes"] == 2
    assert 100 <= memory["driver_peak_rss_mb"] < 150  # the launched process alone
    assert memory["peak_tree_rss_mb"] >= 250  # both at once: the tree's sum
    assert memory["sum_process_peaks_mb"] >= memory["peak_tree_rss_mb"]
    with pytest.raises(SystemExit, match="exited 3"):
        measured([sys.executable, "-c", "raise SystemExit(3)"], run_dir=tmp_path,
                 log=tmp_path / "log", timeout=60)  # fmt: skip


def test_scaling_configs_are_valid_for_every_size() -> None:
    for n in (3, 4, 20):
        shares, threshold = effective_shares(n, 1.0, 0.67)
        fed = scaling_config(n, rounds=2, num_shares=1.0, threshold=0.67).federation
        assert fed.min_clients == n and fed.min_trainers == 3  # a default node's minimum
        assert shares == n and 2 <= threshold <= n
    assert effective_shares(4, 1.0, 0.67) == (4, 3)  # one dropout leaves 3 = min-trainers
    assert effective_shares(20, 1.0, 0.67) == (20, 13)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_scaling_runs_end_to_end_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--merchants", "4", "--rounds", "1",
         "--dropout", "0.25", "--seed", "0", "--memory-rounds", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulation vs merchants" in done.stdout and "memory vs rounds" in done.stdout
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "scaling"
    assert payload["machine"]["cpu_cores"] and "benchmarks.scaling" in payload["machine"]["command"]
    (point,) = payload["points"]
    assert point["merchants"] == 4 and point["dropout"] == 0.25
    assert point["dropped"] == {"1": ["m03"]}  # seed 0: node 3 loses its round-1 reply
    assert point["trained"] == {"1": ["m00", "m01", "m02"]} and point["every_round_aggregated"]
    assert point["failures"] == {"1": 1}
    assert point["ledger_rounds"] == dict.fromkeys(("m00", "m01", "m02", "m03"), 1)  # m03 too
    assert point["total_seconds"] > 0 and len(point["round_wall_seconds"]) == 1
    memory = point["memory"]
    assert memory["ray_workers"] >= 1 and memory["worker_peak_rss_mb"] > 100
    assert memory["peak_tree_rss_mb"] > memory["driver_peak_rss_mb"] > 100
    (rounds,) = payload["memory_vs_rounds"]
    assert rounds["rounds"] == 1 and len(rounds["driver_rss_after_round_mb"]) == 2
    assert rounds["peak_tree_rss_mb"] > 100
