"""Typed TOML run configuration: loading, refusing, round-tripping."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrec.config import RunConfig, load_config
from ecrec.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.toml"


def _write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _refused(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    return message, path


def test_embedded_default_loads() -> None:
    config = load_config()
    assert isinstance(config, RunConfig)
    assert (config.model.architecture, config.model.base_model) == ("hybrid", "minilm")
    assert config.model.target_modules == ("query", "value")  # for the cross-encoder
    assert config.train.dp is True
    assert (config.train.local_steps, config.train.learning_rate) == (50, 0.1)
    assert config.federation.clipping_range == 16.0  # room for the hybrid head's weights
    assert config.federation.secagg is True
    assert (config.federation.num_shares, config.federation.reconstruction_threshold) == (3, 2)
    assert config.privacy.budget_epsilon == 8.0
    assert config == load_config(None)


def test_tiny_config_loads() -> None:
    config = load_config(TINY)
    assert config.model.base_model == "tiny"
    assert config.model.max_length == 32
    assert config.data.merchants == 3
    assert config.train.local_steps == 2 and config.train.batch_size == 16
    assert config.train.learning_rate == pytest.approx(3e-3)
    assert config.federation.num_shares == 1.0
    assert isinstance(config.federation.num_shares, float)
    # Keys the file does not set keep their defaults.
    assert config.model.lora_r == RunConfig().model.lora_r
    assert config.privacy.noise_multiplier is None
    assert load_config(str(TINY)) == config


def test_unknown_table_names_file_and_table(tmp_path: Path) -> None:
    message, path = _refused(tmp_path, "[trainer]\nbatch-size = 8\n")
    assert str(path) in message
    assert "trainer" in message


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    message, path = _refused(tmp_path, "[train]\nbatch-sise = 8\n")
    assert str(path) in message
    assert "train.batch-sise" in message
    assert "batch-size" in message  # the known keys are listed


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[train]\nbatch-size = "8"\n', "train.batch-size"),  # string for int
        ("[federation]\nsecagg = 1\n", "federation.secagg"),  # int for bool
        ("[train]\ndp = 0\n", "train.dp"),
        ("[federation]\nrounds = true\n", "federation.rounds"),  # bool for int
        ("[federation]\nrounds = 2.5\n", "federation.rounds"),  # float for int
        ('[privacy]\nbudget-epsilon = "8"\n', "privacy.budget-epsilon"),  # string for float
        ('[model]\ntarget-modules = "query"\n', "model.target-modules"),  # not a list
        ("[model]\nbase-model = 3\n", "model.base-model"),  # int for string
        ('[federation]\nnum-shares = "3"\n', "federation.num-shares"),  # neither int nor float
    ],
)
def test_wrong_type_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    message, path = _refused(tmp_path, text)
    assert key in message
    assert str(path) in message


def test_int_for_float_is_accepted_as_float(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "[privacy]\nbudget-epsilon = 4\n"))
    assert config.privacy.budget_epsilon == 4.0
    assert isinstance(config.privacy.budget_epsilon, float)


def test_table_that_is_not_a_table(tmp_path: Path) -> None:
    message, path = _refused(tmp_path, "train = 3\n")
    assert str(path) in message and "train" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[federation]\nstrategy = "fedsgd"\n', "federation.strategy"),
        ('[privacy]\naccountant = "gdp"\n', "privacy.accountant"),
        ('[train]\ngrad-sample-mode = "functorch"\n', "train.grad-sample-mode"),
    ],
)
def test_bad_literal_is_refused(tmp_path: Path, text: str, key: str) -> None:
    message, _ = _refused(tmp_path, text)
    assert key in message
    assert text.split('"')[1] in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[train]\nbatch-size = 0\n", "train.batch-size"),
        ("[privacy]\nbudget-epsilon = 0\n", "privacy.budget-epsilon"),
        ("[privacy]\ndelta = 1.5\n", "privacy.delta"),
        ("[federation]\nrounds = 0\n", "federation.rounds"),
        ("[model]\nlora-r = 0\n", "model.lora-r"),
    ],
)
def test_out_of_range_values_are_refused(tmp_path: Path, text: str, key: str) -> None:
    message, _ = _refused(tmp_path, text)
    assert key in message


def test_range_errors_name_the_file(tmp_path: Path) -> None:
    message, path = _refused(tmp_path, "[train]\nbatch-size = 0\n")
    assert str(path) in message


# -- SecAgg+ share rules (Flower's own, checked early) ----------------------------


@pytest.mark.parametrize(
    ("shares", "threshold"),
    [("3", "2"), ("5", "4"), ("1.0", "1.0"), ("0.5", "0.5"), ("1.0", "2"), ("1", "1")],
)
def test_secagg_share_settings_accepted(tmp_path: Path, shares: str, threshold: str) -> None:
    text = f"[federation]\nnum-shares = {shares}\nreconstruction-threshold = {threshold}\n"
    config = load_config(_write(tmp_path, text))
    assert config.federation.num_shares == float(shares)
    assert type(config.federation.num_shares) is (float if "." in shares else int)


@pytest.mark.parametrize(
    ("shares", "threshold", "key"),
    [
        ("2", "1", "federation.num-shares"),  # an integer must be > 2
        ("0", "1", "federation.num-shares"),
        ("1.5", "1", "federation.num-shares"),  # a fraction must be in (0, 1]
        ("0.0", "1", "federation.num-shares"),
        ("3", "3", "federation.reconstruction-threshold"),  # threshold must be < shares
        ("3", "4", "federation.reconstruction-threshold"),
        ("1.0", "1.5", "federation.reconstruction-threshold"),
    ],
)
def test_secagg_share_settings_refused(
    tmp_path: Path, shares: str, threshold: str, key: str
) -> None:
    text = f"[federation]\nnum-shares = {shares}\nreconstruction-threshold = {threshold}\n"
    message, _ = _refused(tmp_path, text)
    assert key in message


def test_secagg_rules_apply_to_replace_too() -> None:
    config = load_config()
    with pytest.raises(ConfigError, match="num-shares"):
        config.replace("federation", num_shares=2)
    assert config.replace("federation", num_shares=4).federation.num_shares == 4
    assert config.federation.num_shares == 3  # replace returns a copy


# -- round trip -------------------------------------------------------------------


@pytest.mark.parametrize("source", [None, TINY], ids=["default", "tiny"])
def test_to_toml_round_trips_through_load(tmp_path: Path, source: Path | None) -> None:
    config = load_config(source)
    path = _write(tmp_path, config.to_toml())
    assert load_config(path) == config


def test_to_toml_round_trips_changed_and_optional_values(tmp_path: Path) -> None:
    config = (
        load_config(TINY)
        .replace("privacy", noise_multiplier=1.25, accountant="prv")
        .replace("train", local_steps=None, local_epochs=1.5, grad_sample_mode="ghost")
        .replace("model", target_modules=("query", "key", "value"), ffa=True)
        .replace("federation", num_shares=0.5, reconstruction_threshold=3, max_weight=250.0)
    )
    path = _write(tmp_path, config.to_toml())
    loaded = load_config(path)
    assert loaded == config
    assert loaded.train.local_steps is None
    assert loaded.model.target_modules == ("query", "key", "value")
    assert loaded != load_config(TINY)


# -- unreadable files -------------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["[train\nbatch-size = 8\n", "[train]\nbatch-size = \n", "[train]\nlr = 1\nlr = 2\n"],
    ids=["unclosed-table", "missing-value", "duplicate-key"],
)
def test_invalid_toml_is_a_one_line_config_error(tmp_path: Path, text: str) -> None:
    message, path = _refused(tmp_path, text)
    assert str(path) in message
    assert "invalid TOML" in message


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[model]\nbase-model = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_snake_case_keys_are_refused(tmp_path) -> None:
    path = tmp_path / "snake.toml"
    path.write_text("[train]\nbatch-size = 8\nbatch_size = 16\n")
    with pytest.raises(ConfigError, match=r"batch_size: keys are kebab-case: write batch-size"):
        load_config(path)
