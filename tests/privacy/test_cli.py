"""``ecrec privacy plan`` and ``ecrec privacy show`` through the real dispatcher."""

from __future__ import annotations

import json

import pytest

from ecrec.cli import main
from ecrec.privacy import PrivacyLedger, RoundSpend, epsilon_for_history

DELTA = 1e-5


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_with_noise_prints_the_epsilon(capsys):
    code, out, err = run(
        capsys, "privacy", "plan", "--sample-rate", "0.01", "--noise-multiplier", "1.0",
        "--steps", "1000", "--delta", "1e-5",
    )  # fmt: skip
    assert code == 0 and err == ""
    result = json.loads(out)
    spend = RoundSpend(noise_multiplier=1.0, sample_rate=0.01, steps=1000)
    assert result["epsilon"] == epsilon_for_history([spend], delta=DELTA)
    assert result["noise_multiplier"] == 1.0
    assert result["accountant"] == "rdp"


def test_plan_with_target_finds_noise_within_it(capsys):
    code, out, _ = run(
        capsys, "privacy", "plan", "--sample-rate", "0.02", "--target-epsilon", "2.0",
        "--steps", "40", "--delta", "1e-5", "--accountant", "prv",
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    spend = RoundSpend(noise_multiplier=result["noise_multiplier"], sample_rate=0.02, steps=40)
    eps = epsilon_for_history([spend], delta=DELTA, accountant="prv")
    assert eps == result["epsilon"]
    assert 2.0 - 0.01 <= eps <= 2.0
    assert result["accountant"] == "prv"


@pytest.mark.parametrize(
    "argv",
    [
        ["--sample-rate", "0.01", "--steps", "10", "--delta", "1e-5"],  # neither mode
        ["--sample-rate", "0.01", "--noise-multiplier", "1", "--target-epsilon", "1",
         "--steps", "10", "--delta", "1e-5"],  # both modes
        ["--sample-rate", "abc", "--noise-multiplier", "1", "--steps", "10", "--delta", "1e-5"],
        ["--sample-rate", "0.01", "--noise-multiplier", "1", "--steps", "10", "--delta", "1e-5",
         "--accountant", "gdp"],
    ],
)  # fmt: skip
def test_plan_argument_errors_are_one_line_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(["privacy", "plan", *argv])
    assert exc.value.code == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "error:" in err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--sample-rate", "1.5", "--noise-multiplier", "1"], "sample_rate"),
        (["--sample-rate", "0.01", "--noise-multiplier", "-1"], "noise_multiplier"),
        (["--sample-rate", "0.01", "--target-epsilon", "0"], "target_epsilon"),
    ],
)
def test_plan_bad_values_are_one_line_exit_2(capsys, argv, match):
    code, out, err = run(capsys, "privacy", "plan", *argv, "--steps", "10", "--delta", "1e-5")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and match in err


def test_show_prints_the_ledger_summary(capsys, tmp_path):
    path = tmp_path / "ledger.json"
    key_file = tmp_path / "ledger.key"
    key_file.write_bytes(b"s3cret-key-bytes\n")
    ledger = PrivacyLedger.open(
        path, budget_epsilon=6.0, delta=DELTA, key=b"s3cret-key-bytes", merchant_id="m1"
    )
    ledger.record_round(round=1, noise_multiplier=1.0, sample_rate=0.01, steps=200)
    ledger.record_round(round=2, noise_multiplier=1.0, sample_rate=0.01, steps=200)

    code, out, err = run(capsys, "privacy", "show", str(path), "--key-file", str(key_file))
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert summary["merchant"] == "m1"
    assert summary["budget"] == 6.0
    assert summary["spent"] == ledger.spent_epsilon()
    assert summary["remaining"] == pytest.approx(6.0 - ledger.spent_epsilon())
    assert summary["rounds"] == 2
    assert [r["round"] for r in summary["epsilon_by_round"]] == [1, 2]


def test_show_refuses_corrupt_or_locked_ledgers(capsys, tmp_path):
    path = tmp_path / "ledger.json"
    PrivacyLedger.open(path, budget_epsilon=6.0, delta=DELTA, key=b"k").record_round(
        round=1, noise_multiplier=1.0, sample_rate=0.01, steps=10
    )
    code, out, err = run(capsys, "privacy", "show", str(path))  # no key
    assert code == 4 and out == "" and err.count("\n") == 1 and str(path) in err

    plain = tmp_path / "plain.json"
    PrivacyLedger.open(plain, budget_epsilon=6.0, delta=DELTA)
    before = plain.read_bytes()
    plain.write_bytes(before[: len(before) // 2])
    code, _, err = run(capsys, "privacy", "show", str(plain))
    assert code == 4 and "JSON" in err and err.count("\n") == 1

    code, _, err = run(capsys, "privacy", "show", str(tmp_path / "absent.json"))
    assert code == 2 and "no privacy ledger" in err

    code, _, err = run(capsys, "privacy", "show", str(path), "--key-file", "/nonexistent/key")
    assert code == 2 and "key file" in err
