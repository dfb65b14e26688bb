"""Where a merchant node keeps its things, read from its own node config.

A SuperNode started by ``ecrec-client`` gets these keys in its Flower *node config*
(set on the merchant's machine; the server can read but never change them)::

    data-path        the merchant's impressions parquet
    ledger-path      its privacy ledger
    ledger-key-file  the node secret that keys the ledger's integrity (and encryption)
    ledger-anchor    the ledger's rollback anchor (default: next to the key file)
    journal-path     the node's local log: declines, training loss and timings
    policy-file      the merchant's policy (optional; defaults otherwise)
    budget-epsilon   the merchant's ε budget (overrides the policy file's)

Flower's simulation engine gives a simulated node only ``partition-id``. A simulation
therefore writes one table of the same keys per partition into a *nodes file*
(:func:`write_nodes_file`), the stand-in for each simulated SuperNode's
``--node-config``; :func:`node_config_for` picks the node's table from it.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tomli_w

from ecrec.atomic import atomic_write_bytes
from ecrec.errors import ConfigError, toml_problem
from ecrec.node.policy import NodePolicy, load_policy

PARTITION_ID = "partition-id"  # Flower's simulation node-config key
NODE_KEYS = (
    "data-path",
    "ledger-path",
    "ledger-key-file",
    "ledger-anchor",
    "journal-path",
    "policy-file",
    "budget-epsilon",
)


@dataclass(frozen=True)
class NodeSettings:
    """Everything node-local: paths on the merchant's machine and its policy."""

    data_path: Path
    ledger_path: Path
    key_file: Path
    anchor_path: Path
    journal_path: Path
    policy: NodePolicy
    policy_file: Path | None = None

    @classmethod
    def from_node_config(
        cls, values: Mapping[str, Any], *, where: str = "node config"
    ) -> NodeSettings:
        unknown = sorted(set(values) - set(NODE_KEYS) - {PARTITION_ID, "num-partitions"})
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r} (known: {', '.join(NODE_KEYS)})"
            )
        for key in ("data-path", "ledger-path", "ledger-key-file"):
            if not values.get(key):
                raise ConfigError(
                    f"{where}: {key} is not set (start the node with ecrec-client, which sets it)"
                )
        for key, value in values.items():
            text = str(value)
            if len(text) > 4096 or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
                raise ConfigError(
                    f"{where}: {key}: {text[:60]!r} is not a usable value (a control "
                    "character, or longer than 4096 characters)"
                )
        data = Path(str(values["data-path"]))
        key_file = Path(str(values["ledger-key-file"]))
        policy_file = Path(str(values["policy-file"])) if values.get("policy-file") else None
        policy = load_policy(policy_file) if policy_file else NodePolicy()
        if values.get("budget-epsilon") not in (None, ""):
            budget = values["budget-epsilon"]
            if isinstance(budget, bool) or not isinstance(budget, int | float):
                raise ConfigError(f"{where}: budget-epsilon must be a number, got {budget!r}")
            if not (budget > 0 and _finite(budget)):
                raise ConfigError(f"{where}: budget-epsilon must be > 0, got {str(budget)[:40]}")
            policy = replace(policy, budget_epsilon=float(budget))
        anchor = values.get("ledger-anchor")
        journal = values.get("journal-path")
        return cls(
            data_path=data,
            ledger_path=Path(str(values["ledger-path"])),
            key_file=key_file,
            anchor_path=Path(str(anchor)) if anchor else default_anchor(key_file),
            journal_path=Path(str(journal)) if journal else data.with_suffix(".journal.jsonl"),
            policy=policy,
            policy_file=policy_file,
        )

    def to_node_config(self) -> dict[str, str | float]:
        """The node config a SuperNode (or a nodes-file table) carries for these settings."""
        values: dict[str, str | float] = {
            "data-path": str(self.data_path),
            "ledger-path": str(self.ledger_path),
            "ledger-key-file": str(self.key_file),
            "ledger-anchor": str(self.anchor_path),
            "journal-path": str(self.journal_path),
            "budget-epsilon": float(self.policy.budget_epsilon),
        }
        if self.policy_file is not None:
            values["policy-file"] = str(self.policy_file)
        return values


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def default_anchor(key_file: Path) -> Path:
    """The ledger's rollback anchor: beside the node secret, away from the ledger."""
    return key_file.with_name(key_file.name + ".anchor")


def write_nodes_file(path: Path, nodes: list[NodeSettings]) -> Path:
    """A simulation's node configs, one table per partition id (0, 1, ...)."""
    document = {str(i): node.to_node_config() for i, node in enumerate(nodes)}
    atomic_write_bytes(path, tomli_w.dumps(document).encode("utf-8"))
    return path


def node_config_for(node_config: Mapping[str, Any], *, nodes_file: str | None) -> Mapping[str, Any]:
    """This node's settings: its own node config, or its table in the simulation's nodes file."""
    if "data-path" in node_config:
        if PARTITION_ID in node_config:
            raise ConfigError(
                "node config: has both data-path and partition-id; a merchant node is started "
                "by ecrec-client, never with a simulation partition"
            )
        return node_config
    if PARTITION_ID not in node_config:
        raise ConfigError("node config: data-path is not set (start the node with ecrec-client)")
    if not nodes_file:
        raise ConfigError(
            "simulated node: the run has no nodes file (run `ecrec simulate`, or set the "
            "run config's simulation-nodes)"
        )
    path = Path(nodes_file)
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the simulation's nodes file: {err}") from None
    except (ValueError, RecursionError) as err:  # TOMLDecodeError, or an absurd number/nesting
        raise ConfigError(
            f"{path}: cannot read the simulation's nodes file: {toml_problem(err)}"
        ) from None
    partition = str(node_config[PARTITION_ID])
    table = document.get(partition)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: no node table for partition {partition}")
    return table


__all__ = [
    "NODE_KEYS",
    "PARTITION_ID",
    "NodeSettings",
    "default_anchor",
    "node_config_for",
    "write_nodes_file",
]
