"""Fuzzing the files a user hands ecrec besides data: configs, policies, settings, ledgers.

Hypothesis feeds each loader random bytes, mutations of a valid file (truncations,
flipped and inserted bytes -- NULs, quotes, newlines --, duplicated and dropped lines,
UTF-16) and hand-made hostile files: arrays nested 2000 deep (``tomllib`` and ``json``
raise ``RecursionError``), integers of 5000 digits (a plain ``ValueError``) or 400
(too large for a float), ``\\u0000`` in a path, a 1 MB field, Latin-1 text. The promise
on every example: the file loads, or the error is an :class:`EcrecError` on one short
line that names the file (and the field, for a bad value); nothing on disk changes; and
through the CLI, a non-zero exit with one line on stderr and no traceback.

The data importers and ``ecrec data validate`` are fuzzed in ``tests/data/test_fuzz_inputs.py``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecrec.cli import main
from ecrec.config import load_config
from ecrec.deploy.settings import load_settings
from ecrec.errors import ConfigError, EcrecError, LedgerCorruptError
from ecrec.node.policy import NodePolicy, load_policy, policy_to_toml
from ecrec.node.settings import NodeSettings, node_config_for
from ecrec.privacy.ledger import PrivacyLedger
from tests.data.test_fuzz_inputs import mutated

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: An error line is short even when the field it quotes is huge.
MAX_ERROR_CHARS = 1000
DIGITS_5000 = "1" + "0" * 4999  # past Python's int-from-string limit (4300 digits)
DIGITS_400 = "1" + "0" * 399  # an int, but too large for a float


def _hostile_toml(valid: str, key: str) -> list[bytes]:
    """Hand-made files every TOML loader must refuse (or accept) in one line.

    ``key`` is a key of the valid file's first table that takes a number."""
    table = valid.split("\n", 1)[0]
    return [
        b"a = " + b"[" * 2000 + b"]" * 2000,  # RecursionError inside tomllib
        f"{table}\n{key} = {DIGITS_5000}\n".encode(),  # ValueError, not TOMLDecodeError
        f"{table}\n{key} = {DIGITS_400}\n".encode(),  # OverflowError in float()
        f"{table}\n{key} = -{DIGITS_400}\n".encode(),
        valid.replace('"', '"\\u0000', 1).encode(),  # a NUL inside the first string
        valid.replace('"', '"' + "x" * 1_000_000, 1).encode(),  # a 1 MB field
        b"\x00" * 64,
        b"\xef\xbb\xbf" + valid.encode(),  # BOM
        valid.encode("utf-16"),
        ("# caf\u00e9\n" + valid).encode("latin-1"),
        valid.encode()[: len(valid) // 2],
    ]


def toml_inputs(valid: str, key: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated(valid.encode()),
        st.binary(max_size=300),
        st.sampled_from(_hostile_toml(valid, key)),
    )


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _assert_one_line_naming(err: Exception, path: Path) -> None:
    message = str(err)
    assert isinstance(err, EcrecError), f"{type(err).__name__}: {message}"
    assert "\n" not in message, message
    assert len(message) <= MAX_ERROR_CHARS, message[:200]
    assert str(path) in message, message


def _load_or_refuse(load: Callable[[Path], Any], data: bytes, name: str) -> None:
    """``load`` the bytes as ``name``: a value, or a one-line error naming the file;
    the folder is byte-for-byte as it was (loaders never write)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / name
        path.write_bytes(data)
        before = _tree(folder)
        try:
            load(path)
        except Exception as err:  # any kind: the assertion says which are allowed
            _assert_one_line_naming(err, path)
        assert _tree(folder) == before


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _assert_cli_refused(code: int, out: str, err: str, *, names: Path) -> None:
    lines = err.strip().splitlines()
    assert code != 0, err
    assert len(lines) == 1 and lines[0].startswith("ecrec: error: "), err
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert str(names) in lines[0], lines[0]
    assert len(lines[0]) <= MAX_ERROR_CHARS + 50


# --------------------------------------------------------------------------- run configs


@FUZZ
@given(data=toml_inputs((ROOT / "configs" / "tiny.toml").read_text("utf-8"), "seed"))
def test_run_config_loader_survives_any_bytes(data: bytes) -> None:
    _load_or_refuse(load_config, data, "run.toml")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("a = " + "[" * 2000 + "]" * 2000, "nested too deeply"),
        (f"[train]\nbatch-size = {DIGITS_5000}\n", "4300 digits"),
        (f"[train]\nbatch-size = {DIGITS_400}\n", "train.batch-size"),
        (f"[train]\nlearning-rate = {DIGITS_400}\n", "train.learning-rate"),
        ('[data]\ndir = "a\\u0000b"\n', "data.dir"),
        ("[privacy]\ndelta = nan\n", "privacy.delta"),
    ],
    ids=["nested", "5000-digits", "int-overflow", "float-overflow", "nul-in-path", "nan"],
)
def test_hostile_run_config_is_one_line_naming_file_and_field(
    tmp_path: Path, text: str, field: str
) -> None:
    """Before the fix these were a RecursionError, a ValueError, an accepted 10^399, an
    OverflowError and an accepted NUL path (found by the fuzzer above)."""
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    _assert_one_line_naming(info.value, path)
    assert field in str(info.value)


@FUZZ
@given(data=toml_inputs((ROOT / "configs" / "tiny.toml").read_text("utf-8"), "seed"))
def test_a_bad_config_stops_ecrec_train_with_one_line(data: bytes) -> None:
    """Through the CLI: the config is read first, so a bad one is named; a good one gets
    as far as the (missing) data file. Either way: exit 2, one line, nothing written."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "run.toml"
        config.write_bytes(data)
        missing = folder / "missing.parquet"
        before = _tree(folder)
        code, out, err = _run(
            "train", "--config", str(config), "--data", str(missing), "--out", str(folder / "a.npz")
        )
        try:
            load_config(config)
        except ConfigError:
            _assert_cli_refused(code, out, err, names=config)
        else:
            _assert_cli_refused(code, out, err, names=missing)
        assert code == 2
        assert _tree(folder) == before


def test_a_server_request_with_absurd_toml_is_a_decline_not_a_crash() -> None:
    """The node parses the server's request with the same loader (``loads_config``): a
    hostile server's RecursionError or 5000-digit number must be a ConfigError the
    ClientApp turns into a decline."""
    from ecrec.config import loads_config

    for text in ("a = " + "[" * 5000 + "]" * 5000, f"[train]\nseed = {DIGITS_5000}\n"):
        with pytest.raises(ConfigError, match="server request: invalid TOML"):
            loads_config(text, source="server request")


# --------------------------------------------------------------------------- node policy


@FUZZ
@given(data=toml_inputs(policy_to_toml(NodePolicy()), "budget-epsilon"))
def test_policy_loader_survives_any_bytes(data: bytes) -> None:
    _load_or_refuse(load_policy, data, "policy.toml")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("a = " + "[" * 2000 + "]" * 2000, "nested too deeply"),
        (f"[policy]\nbudget-epsilon = {DIGITS_400}\n", "policy.budget-epsilon"),
        (f"[policy]\nmin-trainers = {DIGITS_400}\n", "policy.min-trainers"),
        (f"[policy]\nbudget-epsilon = {DIGITS_5000}\n", "4300 digits"),
    ],
    ids=["nested", "float-overflow", "int-overflow", "5000-digits"],
)
def test_hostile_policy_file_is_one_line_naming_file_and_field(
    tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    _assert_one_line_naming(info.value, path)
    assert field in str(info.value)


# --------------------------------------------------------------------------- ecrec-server


SERVER_TOML = """[server]
run-dir = "run"
validation-path = "data/validation.parquet"
insecure = true
address = "127.0.0.1:9092"
rounds = 2
startup-timeout = 30
"""


@FUZZ
@given(data=toml_inputs(SERVER_TOML, "startup-timeout"))
def test_server_settings_loader_survives_any_bytes(data: bytes) -> None:
    _load_or_refuse(load_settings, data, "server.toml")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (SERVER_TOML + f"wait-for-nodes-timeout = {DIGITS_400}\n", "server.wait-for-nodes-timeout"),
        (SERVER_TOML.replace('"run"', '"run\\u0000"'), "server.run-dir"),
        (SERVER_TOML + 'node-keys = ["k\\u0000.pub"]\n', "server.node-keys"),
        (SERVER_TOML.replace('"127.0.0.1:9092"', '"' + "x" * 100_000 + '"'), "server.address"),
        ("a = " + "[" * 2000 + "]" * 2000, "nested too deeply"),
    ],
    ids=["float-overflow", "nul-in-path", "nul-in-key-path", "100k-address", "nested"],
)
def test_hostile_server_settings_are_one_line_naming_file_and_field(
    tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    _assert_one_line_naming(info.value, path)
    assert field in str(info.value)


# --------------------------------------------------------------------------- node settings


NODES_TOML = """[0]
data-path = "data/merchant_m00.parquet"
ledger-path = "ledgers/m00.json"
ledger-key-file = "secrets/m00.key"
journal-path = "journals/m00.jsonl"
budget-epsilon = 8.0
"""


def _node_settings(path: Path) -> NodeSettings:
    """A simulated node's settings from its nodes file, as ``client.node_settings`` reads
    them, but with the file's path as ``where`` (the ClientApp passes "node config": an
    error there names the key, and the file only when it cannot be read)."""
    table = node_config_for({"partition-id": 0}, nodes_file=str(path))
    return NodeSettings.from_node_config(table, where=str(path))


@FUZZ
@given(data=toml_inputs(NODES_TOML, "budget-epsilon"))
def test_nodes_file_loader_survives_any_bytes(data: bytes) -> None:
    _load_or_refuse(_node_settings, data, "nodes.toml")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (NODES_TOML.replace("8.0", DIGITS_400), "budget-epsilon"),
        (NODES_TOML.replace('"data/', '"data\\u0000/'), "data-path"),
        (NODES_TOML + 'policy-file = "p\\u0000.toml"\n', "policy-file"),
    ],
    ids=["float-overflow", "nul-in-data-path", "nul-in-policy-path"],
)
def test_hostile_node_settings_are_one_line_naming_the_field(
    tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "nodes.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        _node_settings(path)
    _assert_one_line_naming(info.value, path)
    assert field in str(info.value)


# --------------------------------------------------------------------------- ledger and anchor


@functools.cache
def _sealed() -> tuple[bytes, bytes, bytes]:
    """A ledger with two recorded rounds: (ledger, anchor, key) bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ledger = PrivacyLedger.init(
            folder / "l.json",
            merchant_id="m00",
            budget_epsilon=8.0,
            delta=1e-5,
            accountant="rdp",
            unit="user",
            key_file=folder / "k.key",
        )
        for rnd in (1, 2):
            ledger.record_round(round=rnd, noise_multiplier=2.0, sample_rate=0.01, steps=50)
        return (
            (folder / "l.json").read_bytes(),
            (folder / "k.key.anchor").read_bytes(),
            (folder / "k.key").read_bytes(),
        )


def _hostile_json(valid: bytes) -> list[bytes]:
    text = valid.decode()
    return [
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError inside json
        b'{"format": ' + DIGITS_5000.encode() + b"}",
        text.replace('"m00"', '"m00' + "x" * 1_000_000 + '"').encode(),
        text.replace('"', '"\\u0000', 1).encode(),
        b"\x00" * 64,
        text.encode("utf-16"),
        b"\xef\xbb\xbf" + valid,
        valid[: len(valid) // 2],
        b"",
    ]


@pytest.mark.parametrize("target", ["ledger", "anchor"])
@FUZZ
@given(data=st.data())
def test_a_damaged_ledger_or_anchor_is_refused_in_one_line_and_left_alone(
    target: str, data: st.DataObject
) -> None:
    ledger_bytes, anchor_bytes, key = _sealed()
    valid = ledger_bytes if target == "ledger" else anchor_bytes
    damaged = data.draw(
        st.one_of(mutated(valid), st.binary(max_size=300), st.sampled_from(_hostile_json(valid)))
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "l.json").write_bytes(damaged if target == "ledger" else ledger_bytes)
        (folder / "k.key.anchor").write_bytes(damaged if target == "anchor" else anchor_bytes)
        (folder / "k.key").write_bytes(key)
        os.chmod(folder / "k.key", 0o600)
        before = _tree(folder)
        damaged_path = folder / ("l.json" if target == "ledger" else "k.key.anchor")
        code, out, err = _run(
            "privacy", "show", str(folder / "l.json"), "--key-file", str(folder / "k.key")
        )
        if damaged == valid:  # a mutation that changed nothing
            assert code == 0, err
        else:
            _assert_cli_refused(code, out, err, names=damaged_path)
            assert code == LedgerCorruptError.exit_code, err
            # The node's own path (a writer) refuses it the same way, and writes nothing.
            with pytest.raises(EcrecError) as info:
                PrivacyLedger.open(folder / "l.json", key_file=folder / "k.key", merchant_id="m00")
            _assert_one_line_naming(info.value, damaged_path)
        after = _tree(folder)
        after.pop("l.json.lock", None)  # readers and writers take the lock file
        assert after == before


@FUZZ
@given(key=st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"\x00" * 32, b"[" * 5000])))
def test_a_wrong_or_broken_key_file_is_refused_in_one_line(key: bytes) -> None:
    ledger_bytes, anchor_bytes, good = _sealed()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "l.json").write_bytes(ledger_bytes)
        (folder / "k.key.anchor").write_bytes(anchor_bytes)
        (folder / "k.key").write_bytes(key)
        before = _tree(folder)
        code, out, err = _run(
            "privacy", "show", str(folder / "l.json"), "--key-file", str(folder / "k.key")
        )
        if key == good:
            assert code == 0
        else:
            named = folder / ("k.key" if len(key) < 32 else "l.json")
            _assert_cli_refused(code, out, err, names=named)
        after = _tree(folder)
        after.pop("l.json.lock", None)
        assert after == before


# --------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize(
    "merchant",
    ["/../../x", "../x", "m\x00", "m/1", "", " m", "m" * 65, ".hidden"],
    ids=["abs-escape", "rel-escape", "nul", "slash", "empty", "space", "65-chars", "dot"],
)
def test_privacy_init_refuses_a_merchant_id_that_is_not_a_safe_name(
    tmp_path: Path, merchant: str
) -> None:
    """A ledger's merchant id must be what a node's data can carry (a safe file name);
    before, ``--merchant /../../x`` was accepted. Nothing is created."""
    code, out, err = _run(
        "privacy", "init", "--ledger", str(tmp_path / "l.json"), "--merchant", merchant,
        "--key-file", str(tmp_path / "k.key"), "--budget-epsilon", "4",
    )  # fmt: skip
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "is not a merchant id" in lines[0], err
    assert "Traceback" not in out + err
    assert list(tmp_path.iterdir()) == []


def test_simulate_refuses_bad_out_and_unknown_budget_before_writing_anything(
    tmp_path: Path,
) -> None:
    """``--out`` must be a folder (was: an internal NotADirectoryError); a
    ``--merchant-budget`` for a merchant the run lacks (``../../x``) is refused before the
    synthetic marketplace is written (was: refused after, leaving ``out/data`` behind)."""
    config = str(ROOT / "configs" / "tiny.toml")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    code, out, err = _run("simulate", "--config", config, "--out", str(a_file))
    _assert_cli_refused(code, out, err, names=a_file)
    assert "not a folder" in err and a_file.read_text() == "x"
    run = tmp_path / "run"
    code, out, err = _run(
        "simulate", "--config", config, "--out", str(run), "--merchant-budget", "../../x=1"
    )
    assert code == 2 and "unknown merchant '../../x'" in err and "Traceback" not in err
    assert not run.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_simulate_with_a_broken_data_folder_leaves_no_run_folder(tmp_path: Path) -> None:
    """A fresh run that fails before round 0 (here: a merchant file that is not parquet)
    leaves no partial run folder behind."""
    data = tmp_path / "data"
    code, _, err = _run("data", "synth", "--merchants", "2", "--out", str(data))
    assert code == 0, err
    (data / "merchant_m01.parquet").write_bytes(b"not parquet")
    run = tmp_path / "run"
    code, out, err = _run(
        "simulate", "--config", str(ROOT / "configs" / "tiny.toml"), "--data", str(data),
        "--out", str(run),
    )  # fmt: skip
    _assert_cli_refused(code, out, err, names=data / "merchant_m01.parquet")
    assert not run.exists()
