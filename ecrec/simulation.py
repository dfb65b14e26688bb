"""Prepare a local simulation: the data, and every simulated merchant's node state.

Flower's simulation engine gives a simulated node nothing but its partition id, so
whoever starts a simulation plays each merchant's part first, as a merchant would
before starting ``ecrec-client``: it explicitly initialises each node's privacy
ledger (with the node policy the simulation was given) and writes each node's config
into the simulation's nodes file (:func:`ecrec.node.settings.write_nodes_file`).
``ecrec simulate`` does this before the run; the ServerApp does it for a bare
``flwr run`` on a simulation federation. Flower-free.

Layout inside the run folder::

    data/                  the synthetic marketplace (when data.dir is empty)
    nodes.toml             each simulated node's config, by partition id
    ledgers/<m>.json       merchant m's privacy ledger
    node-secrets/<m>.key   its node secret (and <m>.key.anchor, the rollback anchor)
    node-secrets/policy.toml  the node policy every simulated node applies
    journals/<m>.jsonl     its node journal (declines, loss, timings)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ecrec.config import DataConfig, RunConfig
from ecrec.data.schema import MERCHANT_FILE_PATTERN, USER_ID, VALIDATION_FILE
from ecrec.errors import EcrecError
from ecrec.node.policy import NodePolicy, load_policy, policy_to_toml
from ecrec.node.settings import NodeSettings, write_nodes_file

if TYPE_CHECKING:
    from ecrec.data.synth import SynthConfig

NODES_FILE = "nodes.toml"


def synth_config_for(data: DataConfig) -> SynthConfig:
    """The synthesizer settings a run's ``[data]`` table describes (one place only)."""
    from ecrec.data.synth import SynthConfig

    names = {f.name for f in dataclasses.fields(SynthConfig)}
    values = {k: v for k, v in dataclasses.asdict(data).items() if k in names}
    return SynthConfig(**values)


def prepare_data(config: RunConfig, run_dir: Path) -> Path:
    """The data folder: the configured one, or a synthetic marketplace in the run folder."""
    if config.data.dir:
        return Path(config.data.dir)
    from ecrec.data.synth import synthesize, write_marketplace

    data_dir = run_dir / "data"
    if not (data_dir / VALIDATION_FILE).exists():
        # Our own folder: a half-written marketplace from an interrupted run is replaced.
        write_marketplace(synthesize(synth_config_for(config.data)), data_dir, overwrite=True)
    return data_dir


def merchant_ids(data_dir: Path) -> list[str]:
    if not data_dir.is_dir():
        raise EcrecError(f"{data_dir}: data folder not found")
    prefix, suffix = MERCHANT_FILE_PATTERN.split("{merchant_id}")
    files = sorted(data_dir.glob(MERCHANT_FILE_PATTERN.format(merchant_id="*")))
    if not files:
        raise EcrecError(f"{data_dir}: no merchant files (make them with `ecrec data synth`)")
    return [f.name[len(prefix) : len(f.name) - len(suffix)] for f in files]


def prepare_simulation(
    config: RunConfig,
    run_dir: Path,
    *,
    policy: NodePolicy | Path | None = None,
    budgets: Mapping[str, float] | None = None,
    resume: bool = False,
) -> tuple[RunConfig, Path]:
    """Data, node states and the nodes file; returns the config (data.dir set) and the file.

    A fresh run initialises every merchant's ledger (refusing if one exists: a
    ledger is never silently replaced); ``resume`` requires them all to exist.
    """
    from ecrec.data.io import read_impressions
    from ecrec.privacy.ledger import PrivacyLedger

    run_dir = Path(run_dir)
    data_dir = prepare_data(config, run_dir)
    config = config.replace("data", dir=str(data_dir))
    ids = merchant_ids(data_dir)
    unknown = sorted(set(budgets or {}) - set(ids))
    if unknown:
        raise EcrecError(f"--merchant-budget: unknown merchant {unknown[0]!r}")
    secrets = run_dir / "node-secrets"
    policy_file = secrets / "policy.toml"
    base = load_policy(policy) if isinstance(policy, Path) else policy or NodePolicy()
    if not (resume and policy_file.exists()):
        secrets.mkdir(parents=True, exist_ok=True)
        policy_file.write_text(policy_to_toml(base), encoding="utf-8")
    base = load_policy(policy_file)
    nodes = []
    for merchant in ids:
        node_policy = base
        if budgets and merchant in budgets:
            node_policy = dataclasses.replace(base, budget_epsilon=float(budgets[merchant]))
        key_file = secrets / f"{merchant}.key"
        settings = NodeSettings(
            data_path=data_dir / MERCHANT_FILE_PATTERN.format(merchant_id=merchant),
            ledger_path=run_dir / "ledgers" / f"{merchant}.json",
            key_file=key_file,
            anchor_path=key_file.with_name(key_file.name + ".anchor"),
            journal_path=run_dir / "journals" / f"{merchant}.jsonl",
            policy=node_policy,
            policy_file=policy_file,
        )
        if not settings.ledger_path.exists():
            if resume:
                raise EcrecError(
                    f"{settings.ledger_path}: merchant {merchant}'s ledger is missing; "
                    "a resumed run never starts a fresh ledger"
                )
            frame = read_impressions(settings.data_path)
            from ecrec.train.local import dp_units

            unit = node_policy.unit_for(has_user_ids=USER_ID in frame.columns)
            units = dp_units(frame, unit=unit, max_rows_per_user=config.privacy.max_rows_per_user)
            PrivacyLedger.init(
                settings.ledger_path,
                merchant_id=merchant,
                budget_epsilon=node_policy.budget_epsilon,
                delta=min(config.privacy.delta, node_policy.delta_ceiling(units.n_units)),
                accountant=node_policy.accountant,
                unit=unit,
                key_file=settings.key_file,
                anchor_path=settings.anchor_path,
            )
        nodes.append(settings)
    nodes_file = write_nodes_file(run_dir / NODES_FILE, nodes)
    return config, nodes_file


def simulated_nodes(nodes_file: Path) -> list[NodeSettings]:
    """The node settings a nodes file holds, in partition order."""
    import tomllib

    document = tomllib.loads(Path(nodes_file).read_text("utf-8"))
    return [
        NodeSettings.from_node_config(document[key], where=f"{nodes_file}: [{key}]")
        for key in sorted(document, key=int)
    ]


__all__ = [
    "NODES_FILE",
    "merchant_ids",
    "prepare_data",
    "prepare_simulation",
    "simulated_nodes",
    "synth_config_for",
]
