"""The privacy report recomputes every ε and agrees with an independent accountant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecrec.config import RunConfig
from ecrec.federation.server import privacy_summary
from ecrec.privacy import PrivacyLedger, RoundSpend, epsilon_for_history
from ecrec.report.privacy_report import build_privacy_report, to_markdown, write_privacy_report
from tests.privacy.reference import google_rdp_epsilon

DELTA = 1e-5
SPENDS = {
    "m00": [(1.1, 0.05, 40), (1.1, 0.05, 40), (1.1, 0.05, 40)],
    "m01": [(0.9, 0.2, 12), (0.9, 0.2, 12), (0.9, 0.2, 12)],
}


def _run_folder(tmp_path: Path, *, budgets: dict[str, float]) -> Path:
    """A run folder whose privacy.json comes from real ledgers, as the server writes it."""
    run = tmp_path / "run"
    run.mkdir()
    reports: dict[int, list[dict]] = {}
    for merchant, spends in SPENDS.items():
        ledger = PrivacyLedger.open(
            tmp_path / f"{merchant}.json",
            budget_epsilon=budgets[merchant],
            delta=DELTA,
            merchant_id=merchant,
        )
        for server_round, (sigma, q, steps) in enumerate(spends, start=1):
            check = ledger.check_round(noise_multiplier=sigma, sample_rate=q, steps=steps)
            if check.affordable:
                ledger.record_round(
                    round=server_round, noise_multiplier=sigma, sample_rate=q, steps=steps
                )
                report = {
                    "declined": 0,
                    "steps": steps,
                    "noise_multiplier": sigma,
                    "sample_rate": q,
                }
            else:
                ledger.record_decline(round=server_round, reason=check.reason)
                report = {"declined": 1, "steps": 0, "decline_reason": check.reason}
            reports.setdefault(server_round, []).append(
                {
                    **report,
                    "merchant_id": merchant,
                    "budget_epsilon": budgets[merchant],
                    "epsilon_spent": ledger.spent_epsilon(),
                    "epsilon_remaining": ledger.remaining_epsilon(),
                }
            )
    (run / "privacy.json").write_text(json.dumps(privacy_summary(RunConfig(), reports)))
    return run


def test_epsilon_per_round_matches_google_dp_accounting(tmp_path: Path) -> None:
    report = build_privacy_report(_run_folder(tmp_path, budgets={"m00": 50.0, "m01": 50.0}))
    for merchant, spends in SPENDS.items():
        rows = report["merchants"][merchant]["rounds"]
        for index, row in enumerate(rows):
            history = [RoundSpend(*s) for s in spends[: index + 1]]
            assert row["epsilon"] == pytest.approx(google_rdp_epsilon(history, DELTA), rel=1e-6)
        assert report["merchants"][merchant]["consistent_with_ledger"]


def test_declined_rounds_and_projection(tmp_path: Path) -> None:
    one_round = epsilon_for_history([RoundSpend(*SPENDS["m01"][0])], delta=DELTA)
    two_rounds = epsilon_for_history([RoundSpend(*s) for s in SPENDS["m01"][:2]], delta=DELTA)
    budget = (one_round + two_rounds) / 2  # round 1 fits, round 2 does not
    report = build_privacy_report(_run_folder(tmp_path, budgets={"m00": 50.0, "m01": budget}))
    m01 = report["merchants"]["m01"]
    assert m01["declined_rounds"] == [2, 3]
    assert m01["epsilon_spent"] == pytest.approx(one_round, rel=1e-12)
    assert m01["projected_rounds_to_exhaustion"] == 0
    m00 = report["merchants"]["m00"]
    history = [RoundSpend(*s) for s in SPENDS["m00"]]
    extra = m00["projected_rounds_to_exhaustion"]
    assert extra > 0
    more = [*history, *[history[-1]] * extra]
    assert epsilon_for_history(more, delta=DELTA) <= 50.0
    assert epsilon_for_history([*more, history[-1]], delta=DELTA) > 50.0


def test_tampered_privacy_json_is_reported_as_inconsistent(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, budgets={"m00": 50.0, "m01": 50.0})
    privacy = json.loads((run / "privacy.json").read_text())
    privacy["merchants"]["m00"]["rounds"][1]["epsilon"] *= 0.9  # a server under-reporting
    (run / "privacy.json").write_text(json.dumps(privacy))
    report = build_privacy_report(run)
    assert report["merchants"]["m00"]["consistent_with_ledger"] is False
    assert report["merchants"]["m00"]["mismatched_rounds"] == [2]
    assert "| m00 |" in to_markdown(report) and "| NO |" in to_markdown(report)


def test_written_files_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ecrec.cli import main

    run = _run_folder(tmp_path, budgets={"m00": 50.0, "m01": 50.0})
    _, paths = write_privacy_report(run)
    assert [p.name for p in paths] == [
        "privacy_report.json",
        "privacy_report.md",
        "privacy_report.png",
    ]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["privacy", "report", str(run)]) == 0
    assert "m00" in capsys.readouterr().out
    assert main(["privacy", "report", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
