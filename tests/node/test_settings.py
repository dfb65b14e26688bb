"""A node's settings come from the merchant's own node config, never from the server.

The server's fit config may name a simulation nodes file; a deployed node (its node
config has ``data-path``) must ignore it, so a server cannot point a merchant's node
at another ledger, policy or budget.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from ecrec.errors import ConfigError
from ecrec.node import NodePolicy, NodeSettings
from ecrec.node.policy import policy_to_toml
from ecrec.node.settings import (
    PARTITION_ID,
    default_anchor,
    node_config_for,
    write_nodes_file,
)


def _settings(tmp_path: Path, name: str = "m00", policy_file: Path | None = None) -> NodeSettings:
    key_file = tmp_path / "secrets" / f"{name}.key"
    return NodeSettings(
        data_path=tmp_path / f"{name}.parquet",
        ledger_path=tmp_path / "ledgers" / f"{name}.json",
        key_file=key_file,
        anchor_path=default_anchor(key_file),
        journal_path=tmp_path / "journals" / f"{name}.jsonl",
        policy=NodePolicy(budget_epsilon=4.0),
        policy_file=policy_file,
    )


def _policy_file(tmp_path: Path, policy: NodePolicy) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(policy_to_toml(policy), encoding="utf-8")
    return path


def test_node_config_round_trip(tmp_path: Path) -> None:
    policy = NodePolicy(budget_epsilon=4.0, min_trainers=5)
    settings = _settings(tmp_path, policy_file=_policy_file(tmp_path, policy))
    settings = dataclasses.replace(settings, policy=policy)
    assert NodeSettings.from_node_config(settings.to_node_config()) == settings


def test_budget_in_the_node_config_overrides_the_policy_file(tmp_path: Path) -> None:
    policy_file = _policy_file(tmp_path, NodePolicy(budget_epsilon=8.0, min_trainers=4))
    values = {**_settings(tmp_path).to_node_config(), "policy-file": str(policy_file)}
    values["budget-epsilon"] = 2
    settings = NodeSettings.from_node_config(values)
    assert settings.policy == NodePolicy(budget_epsilon=2.0, min_trainers=4)


def test_defaults_for_anchor_and_journal(tmp_path: Path) -> None:
    values = {
        "data-path": str(tmp_path / "m.parquet"),
        "ledger-path": str(tmp_path / "m.json"),
        "ledger-key-file": str(tmp_path / "m.key"),
    }
    settings = NodeSettings.from_node_config(values)
    assert settings.anchor_path == tmp_path / "m.key.anchor"
    assert settings.journal_path == tmp_path / "m.journal.jsonl"
    assert settings.policy == NodePolicy() and settings.policy_file is None


@pytest.mark.parametrize("key", ["data-path", "ledger-path", "ledger-key-file"])
def test_required_key_missing_is_a_one_line_error_naming_it(key: str, tmp_path: Path) -> None:
    values = _settings(tmp_path).to_node_config()
    for missing in (None, ""):
        broken = {k: v for k, v in values.items() if k != key}
        if missing is not None:
            broken[key] = missing
        with pytest.raises(ConfigError, match=key) as info:
            NodeSettings.from_node_config(broken, where="node m00")
        assert str(info.value).startswith("node m00: ") and "\n" not in str(info.value)


def test_unknown_node_config_key_is_refused(tmp_path: Path) -> None:
    values = {**_settings(tmp_path).to_node_config(), "budget-epsilonn": 1.0}
    with pytest.raises(ConfigError, match="budget-epsilonn"):
        NodeSettings.from_node_config(values)


@pytest.mark.parametrize("budget", [True, "8", 0, -1.0, math.inf, math.nan])
def test_bad_budget_is_refused(budget, tmp_path: Path) -> None:
    values = {**_settings(tmp_path).to_node_config(), "budget-epsilon": budget}
    with pytest.raises(ConfigError, match="budget-epsilon"):
        NodeSettings.from_node_config(values)


def test_a_deployed_node_ignores_a_nodes_file_named_by_the_server(tmp_path: Path) -> None:
    own = _settings(tmp_path / "merchant").to_node_config()
    hostile = write_nodes_file(tmp_path / "server" / "nodes.toml", [_settings(tmp_path / "evil")])
    assert node_config_for(own, nodes_file=str(hostile)) is own
    settings = NodeSettings.from_node_config(node_config_for(own, nodes_file=str(hostile)))
    assert settings.ledger_path == tmp_path / "merchant" / "ledgers" / "m00.json"


def test_a_node_config_with_data_path_and_partition_id_is_refused(tmp_path: Path) -> None:
    values = {**_settings(tmp_path).to_node_config(), PARTITION_ID: 0}
    with pytest.raises(ConfigError, match="partition-id"):
        node_config_for(values, nodes_file=None)


def test_a_simulated_node_reads_its_own_table(tmp_path: Path) -> None:
    nodes = [_settings(tmp_path, "m00"), _settings(tmp_path, "m01")]
    path = write_nodes_file(tmp_path / "nodes.toml", nodes)
    for partition, expected in enumerate(nodes):
        table = node_config_for({PARTITION_ID: partition}, nodes_file=str(path))
        assert NodeSettings.from_node_config(table) == expected
    with pytest.raises(ConfigError, match="partition 2"):
        node_config_for({PARTITION_ID: 2}, nodes_file=str(path))
    with pytest.raises(ConfigError, match="nodes file"):
        node_config_for({PARTITION_ID: 0}, nodes_file=None)
    with pytest.raises(ConfigError, match="data-path"):
        node_config_for({}, nodes_file=str(path))
