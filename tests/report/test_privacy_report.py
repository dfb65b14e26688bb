"""The privacy report: each merchant's spend from its own ledger, recomputed and
checked against an independent accountant; the server's view is only what nodes told it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecrec.config import RunConfig
from ecrec.federation.protocol import Decline
from ecrec.federation.server import RoundLog, _update_history, privacy_summary
from ecrec.node.policy import NodePolicy
from ecrec.node.settings import NodeSettings, write_nodes_file
from ecrec.privacy import PrivacyLedger, RoundSpend, epsilon_for_history
from ecrec.report.privacy_report import (
    NOT_PRIVATE,
    build_privacy_report,
    to_markdown,
    write_privacy_report,
)
from tests.privacy.reference import google_pld_epsilon, google_rdp_epsilon

DELTA = 1e-5
SPENDS = {
    "m00": [(1.5, 0.05, 40), (1.5, 0.05, 40), (1.5, 0.05, 40)],
    "m01": [(1.3, 0.1, 12), (1.3, 0.1, 12), (1.3, 0.1, 12)],
}


def _run_folder(
    tmp_path: Path,
    *,
    budgets: dict[str, float],
    simulation: bool = True,
    disclose: bool = False,
    private: bool = True,
) -> Path:
    """A run folder as a simulation leaves it: each merchant's ledger (spent round by
    round while it fits), the nodes file, and the server's privacy.json of what each
    node told it (declines, and ε only when ``disclose``)."""
    run = tmp_path / "run"
    run.mkdir()
    history: dict = {}
    nodes = []
    for merchant, spends in SPENDS.items():
        key = tmp_path / "secrets" / f"{merchant}.key"
        settings = NodeSettings(
            data_path=tmp_path / f"{merchant}.parquet",
            ledger_path=tmp_path / "ledgers" / f"{merchant}.json",
            key_file=key,
            anchor_path=key.with_name(key.name + ".anchor"),
            journal_path=tmp_path / f"{merchant}.jsonl",
            policy=NodePolicy(budget_epsilon=budgets[merchant]),
        )
        nodes.append(settings)
        ledger = PrivacyLedger.init(
            settings.ledger_path,
            merchant_id=merchant,
            budget_epsilon=budgets[merchant],
            delta=DELTA,
            accountant="pld",
            unit="user",
            key_file=key,
            anchor_path=settings.anchor_path,
        )
        for server_round, (sigma, q, steps) in enumerate(spends, start=1):
            log = RoundLog(server_round)
            if ledger.check_round(noise_multiplier=sigma, sample_rate=q, steps=steps).affordable:
                spent = ledger.record_round(
                    round=server_round, noise_multiplier=sigma, sample_rate=q, steps=steps
                )
                disclosed = {"merchant": merchant, "trained": True}
                if disclose:
                    disclosed |= {"epsilon-spent": spent, "accountant": "pld", "unit": "user"}
                log.trained[merchant] = disclosed
            else:
                log.declines.append(Decline(merchant, server_round, "privacy budget: too much"))
            _update_history(history, log)
    config = RunConfig() if private else RunConfig().replace("train", dp=False)
    (run / "privacy.json").write_text(json.dumps(privacy_summary(config, history)))
    if simulation:
        write_nodes_file(run / "nodes.toml", nodes)
    return run


def test_epsilon_per_round_matches_google_dp_accounting(tmp_path: Path) -> None:
    report = build_privacy_report(_run_folder(tmp_path, budgets={"m00": 50.0, "m01": 50.0}))
    for merchant, spends in SPENDS.items():
        info = report["merchants"][merchant]
        assert (info["accountant"], info["other_accountant"], info["unit"]) == (
            "pld",
            "rdp",
            "user",
        )
        for index, row in enumerate(info["rounds"]):
            history = [RoundSpend(*s) for s in spends[: index + 1]]
            assert row["epsilon"] == pytest.approx(google_pld_epsilon(history, DELTA), rel=0.01)
            assert row["epsilon_other"] == pytest.approx(
                google_rdp_epsilon(history, DELTA), rel=0.01
            )
            assert row["epsilon"] <= row["epsilon_other"]  # PLD is the tighter bound
        assert info["consistent_with_ledger"]


def test_declined_rounds_reasons_and_projection(tmp_path: Path) -> None:
    def eps(spends: list) -> float:
        return epsilon_for_history([RoundSpend(*s) for s in spends], delta=DELTA)

    one_round, two_rounds = eps(SPENDS["m01"][:1]), eps(SPENDS["m01"][:2])
    budget = (one_round + two_rounds) / 2  # round 1 fits, round 2 does not
    report = build_privacy_report(_run_folder(tmp_path, budgets={"m00": 50.0, "m01": budget}))
    m01 = report["merchants"]["m01"]
    assert m01["declined_rounds"] == [2, 3]
    assert m01["decline_reasons"] == {
        "2": "privacy budget: too much",
        "3": "privacy budget: too much",
    }
    assert m01["epsilon_spent"] == pytest.approx(one_round, rel=1e-9)
    assert m01["projected_rounds_to_exhaustion"] == 0
    m00 = report["merchants"]["m00"]
    history = [RoundSpend(*s) for s in SPENDS["m00"]]
    extra = m00["projected_rounds_to_exhaustion"]
    assert extra > 0
    more = [*history, *[history[-1]] * extra]
    assert epsilon_for_history(more, delta=DELTA) <= 50.0
    assert epsilon_for_history([*more, history[-1]], delta=DELTA) > 50.0
    markdown = to_markdown(report)
    assert "round 2 declined: privacy budget" in markdown and "per user" in markdown


def test_a_node_that_misreports_its_spend_is_caught(tmp_path: Path) -> None:
    """ε a node disclosed to the server is checked against the merchant's own ledger."""
    run = _run_folder(tmp_path, budgets={"m00": 50.0, "m01": 50.0}, disclose=True)
    assert build_privacy_report(run)["merchants"]["m00"]["disclosed_agrees"] is True
    privacy = json.loads((run / "privacy.json").read_text())
    privacy["merchants"]["m00"]["rounds"][1]["epsilon_spent"] *= 0.9  # under-reported
    (run / "privacy.json").write_text(json.dumps(privacy))
    assert build_privacy_report(run)["merchants"]["m00"]["disclosed_agrees"] is False


def test_a_deployment_server_reports_only_what_nodes_disclosed(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, budgets={"m00": 50.0, "m01": 50.0}, simulation=False)
    report = build_privacy_report(run)
    for info in report["merchants"].values():
        assert "epsilon_spent" not in info  # the server never saw the spend
        assert [r["trained"] for r in info["server_view"]["rounds"]] == [True] * 3
    assert "(not disclosed)" in to_markdown(report)


def test_a_non_private_run_says_so(tmp_path: Path) -> None:
    report = build_privacy_report(
        _run_folder(tmp_path, budgets={"m00": 50.0, "m01": 50.0}, private=False)
    )
    assert report["private"] is False and report["notice"] == NOT_PRIVATE
    assert NOT_PRIVATE in to_markdown(report)


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
