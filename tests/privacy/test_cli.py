"""``ecrec privacy plan`` and ``ecrec privacy show`` through the real dispatcher."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

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
    assert result["accountant"] == "pld"  # the default, named beside the ε


@pytest.mark.parametrize("accountant", ["pld", "rdp", "prv"])
def test_plan_names_the_accountant_it_used(capsys, accountant):
    code, out, err = run(
        capsys, "privacy", "plan", "--sample-rate", "0.02", "--noise-multiplier", "1.2",
        "--steps", "30", "--delta", "1e-5", "--accountant", accountant,
    )  # fmt: skip
    assert code == 0 and err == ""
    result = json.loads(out)
    spend = RoundSpend(noise_multiplier=1.2, sample_rate=0.02, steps=30)
    assert result["accountant"] == accountant
    assert result["epsilon"] == epsilon_for_history([spend], delta=DELTA, accountant=accountant)


def test_plan_offers_exactly_the_accountants(capsys):
    from ecrec.privacy import ACCOUNTANTS

    with pytest.raises(SystemExit):
        main(["privacy", "plan", "--help"])
    usage = " ".join(capsys.readouterr().out.split())
    assert "{" + ",".join(ACCOUNTANTS) + "}" in usage and "pld (default" in usage


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


# --------------------------------------------------------------------------- #
# privacy init / show: the ledger subcommands
# --------------------------------------------------------------------------- #


def node_paths(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Ledger on the data disk; key and anchor elsewhere (here: another folder)."""
    key_file = tmp_path / "secrets" / "node.key"
    return tmp_path / "data" / "ledger.json", key_file, key_file.with_name("node.key.anchor")


def init_argv(ledger: Path, key_file: Path, *extra: str) -> list[str]:
    return [
        "privacy", "init", "--ledger", str(ledger), "--merchant", "m1",
        "--budget-epsilon", "6", "--key-file", str(key_file), *extra,
    ]  # fmt: skip


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_init_creates_ledger_key_and_anchor_and_says_where(capsys, tmp_path):
    ledger_path, key_file, anchor = node_paths(tmp_path)
    code, out, err = run(capsys, *init_argv(ledger_path, key_file, "--unit", "user"))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    assert str(ledger_path) in lines[0] and "merchant m1" in lines[0] and "per user" in lines[0]
    assert lines[1] == f"created key file {key_file} (32 random bytes, mode 0600)"
    assert lines[2] == f"created anchor {anchor}"
    assert "same file system" in err  # tmp_path is one disk: the merchant is told
    assert len(key_file.read_bytes()) == 32 and key_file.stat().st_mode & 0o077 == 0
    ledger = PrivacyLedger.load(ledger_path, key_file=key_file)
    assert (ledger.merchant_id, ledger.budget_epsilon, ledger.delta) == ("m1", 6.0, 1e-5)
    assert ledger.unit == "user" and not ledger.encrypted and ledger.rounds == []
    default = inspect.signature(epsilon_for_history).parameters["accountant"].default
    assert ledger.accountant == default  # "ecrec's default accountant"


def test_init_options_and_an_existing_key_file(capsys, tmp_path):
    ledger_path, key_file, _ = node_paths(tmp_path)
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(bytes(range(40)))
    anchor = tmp_path / "elsewhere" / "m1.anchor"
    code, out, _ = run(
        capsys,
        *init_argv(ledger_path, key_file, "--anchor", str(anchor), "--delta", "1e-6",
                   "--accountant", "prv", "--encrypt"),
    )  # fmt: skip
    assert code == 0 and f"used existing key file {key_file}" in out and "encrypted" in out
    assert key_file.read_bytes() == bytes(range(40))
    ledger = PrivacyLedger.load(ledger_path, key_file=key_file, anchor_path=anchor)
    assert (ledger.delta, ledger.accountant, ledger.unit, ledger.encrypted) == (
        1e-6, "prv", "row", True,
    )  # fmt: skip


def test_init_refuses_to_start_over_an_existing_ledger(capsys, tmp_path):
    ledger_path, key_file, _ = node_paths(tmp_path)
    assert run(capsys, *init_argv(ledger_path, key_file))[0] == 0
    PrivacyLedger.open(ledger_path, key_file=key_file).record_round(
        round=1, noise_multiplier=1.0, sample_rate=0.01, steps=50
    )
    before = files_under(tmp_path)
    code, out, err = run(capsys, *init_argv(ledger_path, key_file))
    assert code == 2 and out == "" and err.count("\n") == 1 and "already exists" in err
    ledger_path.unlink()  # a deleted ledger: its anchor still blocks a fresh budget
    code, _, err = run(capsys, *init_argv(ledger_path, key_file))
    assert code == 2 and "anchor" in err and err.count("\n") == 1
    assert not ledger_path.exists()
    del before[str(ledger_path.relative_to(tmp_path))]
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--budget-epsilon", "0"], "budget_epsilon"),
        (["--budget-epsilon", "6", "--delta", "2"], "delta"),
        (["--budget-epsilon", "6", "--accountant", "gdp"], "accountant"),
        ([], "--budget-epsilon is required"),
    ],
)
def test_init_bad_values_are_one_line_and_create_nothing(capsys, tmp_path, extra, match):
    ledger_path, key_file, _ = node_paths(tmp_path)
    argv = ["privacy", "init", "--ledger", str(ledger_path), "--merchant", "m1",
            "--key-file", str(key_file), *extra]  # fmt: skip
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and match in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--merchant", "m1", "--budget-epsilon", "6", "--key-file", "k"],  # no --ledger
        ["--ledger", "l", "--budget-epsilon", "6", "--key-file", "k"],  # no --merchant
        ["--ledger", "l", "--merchant", "m1", "--budget-epsilon", "6"],  # no --key-file
        ["--ledger", "l", "--merchant", "m1", "--budget-epsilon", "x", "--key-file", "k"],
        ["--ledger", "l", "--merchant", "m1", "--budget-epsilon", "6", "--key-file", "k",
         "--unit", "household"],
    ],
)  # fmt: skip
def test_init_argument_errors_are_one_line_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(["privacy", "init", *argv])
    assert exc.value.code == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "error:" in err


def test_lost_anchor_is_refused_until_init_reanchor(capsys, tmp_path):
    ledger_path, key_file, anchor = node_paths(tmp_path)
    run(capsys, *init_argv(ledger_path, key_file))
    PrivacyLedger.open(ledger_path, key_file=key_file).record_round(
        round=1, noise_multiplier=1.0, sample_rate=0.01, steps=50
    )
    anchor.unlink()
    code, out, err = run(capsys, "privacy", "show", str(ledger_path), "--key-file", str(key_file))
    assert code == 4 and out == "" and err.count("\n") == 1
    assert "ecrec privacy init --reanchor" in err and str(anchor) in err

    reanchor = ["privacy", "init", "--reanchor", "--ledger", str(ledger_path), "--merchant", "m1",
                "--key-file", str(key_file)]  # fmt: skip
    code, _, err = run(capsys, *reanchor, "--budget-epsilon", "9")
    assert code == 2 and "--reanchor keeps the ledger as it is; drop --budget-epsilon" in err
    assert not anchor.exists()
    someone_else = [arg if arg != "m1" else "m2" for arg in reanchor]
    code, _, err = run(capsys, *someone_else)
    assert code == 4 and "belongs to merchant 'm1', not 'm2'" in err and not anchor.exists()
    code, out, err = run(capsys, *reanchor)
    assert code == 0 and f"new anchor {anchor}" in out and "1 rounds" in out
    code, out, _ = run(capsys, "privacy", "show", str(ledger_path), "--key-file", str(key_file))
    assert code == 0 and json.loads(out)["rounds"] == 1
    code, _, err = run(capsys, *reanchor)  # only for a lost anchor
    assert code == 2 and "only for a lost anchor" in err


def test_show_prints_the_ledger_summary(capsys, tmp_path):
    ledger_path, key_file, anchor = node_paths(tmp_path)
    ledger = PrivacyLedger.init(
        ledger_path, merchant_id="m1", budget_epsilon=6.0, delta=DELTA, accountant="rdp",
        unit="user", key_file=key_file, encrypt=True,
    )  # fmt: skip
    ledger.record_round(round=1, noise_multiplier=1.0, sample_rate=0.01, steps=200)
    ledger.record_round(round=2, noise_multiplier=1.0, sample_rate=0.01, steps=200)
    before = files_under(tmp_path)

    code, out, err = run(capsys, "privacy", "show", str(ledger_path), "--key-file", str(key_file))
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert (summary["merchant"], summary["budget"], summary["rounds"]) == ("m1", 6.0, 2)
    assert summary["spent"] == ledger.spent_epsilon()
    assert summary["remaining"] == pytest.approx(6.0 - ledger.spent_epsilon())
    assert (summary["accountant"], summary["unit"], summary["anchor"]) == (
        "rdp",
        "user",
        str(anchor),
    )
    assert [(r["round"], r["accountant"], r["unit"]) for r in summary["epsilon_by_round"]] == [
        (1, "rdp", "user"), (2, "rdp", "user"),
    ]  # fmt: skip
    assert files_under(tmp_path) == before  # read-only


def test_show_refuses_missing_corrupt_rolled_back_or_wrongly_keyed_ledgers(capsys, tmp_path):
    ledger_path, key_file, _ = node_paths(tmp_path)
    show = ["privacy", "show", str(ledger_path), "--key-file", str(key_file)]
    code, _, err = run(capsys, *show)  # never initialised
    assert code == 4 and "ecrec privacy init" in err and err.count("\n") == 1

    ledger = PrivacyLedger.init(
        ledger_path, merchant_id="m1", budget_epsilon=6.0, delta=DELTA, accountant="rdp",
        unit="row", key_file=key_file,
    )  # fmt: skip
    ledger.record_round(round=1, noise_multiplier=1.0, sample_rate=0.01, steps=10)
    older = ledger_path.read_bytes()
    ledger.record_round(round=2, noise_multiplier=1.0, sample_rate=0.01, steps=10)
    current = ledger_path.read_bytes()

    ledger_path.write_bytes(older)  # rolled back
    code, out, err = run(capsys, *show)
    assert code == 4 and out == "" and "rolled back" in err and err.count("\n") == 1
    ledger_path.write_bytes(current[: len(current) // 2])  # truncated
    code, _, err = run(capsys, *show)
    assert code == 4 and "JSON" in err and err.count("\n") == 1
    ledger_path.write_bytes(current)

    wrong_key = tmp_path / "other.key"
    wrong_key.write_bytes(b"k" * 32)
    anchor = str(key_file) + ".anchor"
    code, _, err = run(capsys, *show[:3], "--key-file", str(wrong_key), "--anchor", anchor)
    assert code == 4 and "key id" in err and err.count("\n") == 1
    code, _, err = run(capsys, *show[:3], "--key-file", "/nonexistent/key")
    assert code == 2 and "key file" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:  # --key-file is required
        main(show[:3])
    assert exc.value.code == 2
    assert run(capsys, *show)[0] == 0
