"""ecrec-client's settings and the checks of every input before Flower starts: policy,
data and plain PII, TLS files, ledger key, the ledger's seal and anchor (or ``--init-ledger``)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ecrec.certs import check_ca_cert, check_node_private_key
from ecrec.deploy.net import Address
from ecrec.errors import ConfigError, DataError, LedgerMissingError
from ecrec.node.settings import NodeSettings, default_anchor

if TYPE_CHECKING:
    import pandas as pd

    from ecrec.node.policy import NodePolicy
    from ecrec.privacy.ledger import PrivacyLedger

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ClientSettings:
    """ecrec-client's inputs, paths absolute (see ``ecrec-client --help``)."""

    server: Address
    data: Path
    key: Path | None
    ca: Path | None
    insecure: bool
    ledger: Path
    ledger_key_file: Path
    ledger_anchor: Path
    journal: Path
    log_file: Path
    policy_file: Path | None = None
    budget_epsilon: float | None = None
    init_ledger: bool = False
    trusted_fab_sha256: tuple[str, ...] = ()
    runtime_port: int = 0
    connect_timeout: float = 300.0
    verbose: bool = False


def default_ledger(data: Path) -> Path:
    """Where the node keeps its ledger unless told otherwise (next to the data)."""
    return data.with_suffix(".ledger.json")


def default_key_file(ledger: Path) -> Path:
    """The node secret that keys the ledger, unless told otherwise (next to the ledger)."""
    return ledger.with_name(ledger.name + ".key")


def default_journal(data: Path) -> Path:
    """The node's journal unless told otherwise (the node's own default, next to the data)."""
    return data.with_suffix(".journal.jsonl")


def default_ledger_anchor(key_file: Path) -> Path:
    """The ledger's rollback anchor unless told otherwise (beside the key file)."""
    return default_anchor(key_file)


@dataclass(frozen=True)
class CheckedNode:
    """What the checks found: the node's settings, its merchant, data and ledger."""

    node: NodeSettings
    merchant: str
    rows: int
    units: int
    unit: str
    ledger: PrivacyLedger
    created_ledger: bool


def load_node_policy(settings: ClientSettings) -> NodePolicy:
    """The merchant's policy: the file (or defaults), with ``--budget-epsilon`` over it."""
    from ecrec.node.policy import NodePolicy, load_policy

    policy = load_policy(settings.policy_file) if settings.policy_file else NodePolicy()
    budget = settings.budget_epsilon
    if budget is not None:
        if not (math.isfinite(budget) and budget > 0):
            raise ConfigError(f"--budget-epsilon must be a number > 0, got {budget}")
        policy = replace(policy, budget_epsilon=float(budget))
    return policy


def _check_data(settings: ClientSettings) -> pd.DataFrame:
    from ecrec.data.io import read_impressions
    from ecrec.node.node import check_plain_text

    if not settings.data.is_file():
        raise DataError(f"{settings.data}: data file not found")
    frame = read_impressions(settings.data)
    merchants = sorted(frame["merchant_id"].astype(str).unique())
    if len(merchants) != 1:
        raise DataError(
            f"{settings.data}: a node serves one merchant, "
            f"found {len(merchants)} merchant_id values"
        )
    check_plain_text(frame, source=str(settings.data))
    return frame


def _check_tls(settings: ClientSettings) -> None:
    if settings.insecure:
        for flag, value in (("--key", settings.key), ("--ca", settings.ca)):
            if value is not None:
                raise ConfigError(
                    f"--insecure cannot be combined with {flag}: node authentication and "
                    "server verification need TLS"
                )
        return
    if settings.ca is None:
        raise ConfigError("--ca is required (the ca.crt from the server operator), or --insecure")
    if settings.key is None:
        raise ConfigError(
            "--key is required (your node's private key; make one with "
            "`ecrec certs node-key --out PREFIX`), or --insecure"
        )
    check_ca_cert(settings.ca)
    check_node_private_key(settings.key)
    _private(settings.key, "private key")


def _private(path: Path, what: str) -> None:
    if path.exists() and path.stat().st_mode & 0o077:
        raise ConfigError(f"{path}: {what} is readable by others; run `chmod 600 {path}`")


def _writable_folder(path: Path, what: str) -> None:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{path}: cannot create the {what} here")


def _units(frame: pd.DataFrame, unit: str) -> int:
    """DP units in the data: shoppers (distinct ids) or rows, as the node counts them."""
    from ecrec.data.schema import USER_ID

    if unit == "row":
        return len(frame)
    if USER_ID not in frame.columns:
        raise ConfigError(
            f'node policy: unit = "user" needs a {USER_ID} column (shopper ids) in the data'
        )
    return int(frame[USER_ID].astype(str).nunique())


def _open_or_init_ledger(
    settings: ClientSettings, node: NodeSettings, *, merchant: str, unit: str, units: int
) -> tuple[PrivacyLedger, bool]:
    from ecrec.privacy.ledger import PrivacyLedger

    policy = node.policy
    if settings.init_ledger:
        ledger = PrivacyLedger.init(
            node.ledger_path,
            merchant_id=merchant,
            budget_epsilon=policy.budget_epsilon,
            delta=policy.delta_ceiling(units),
            accountant=policy.accountant,  # type: ignore[arg-type]
            unit=unit,  # type: ignore[arg-type]
            key_file=node.key_file,
            anchor_path=node.anchor_path,
        )
        return ledger, True
    try:
        ledger = PrivacyLedger.open(
            node.ledger_path,
            key_file=node.key_file,
            anchor_path=node.anchor_path,
            merchant_id=merchant,
        )
    except LedgerMissingError:
        if node.ledger_path.exists() or node.anchor_path.exists():
            raise
        raise LedgerMissingError(
            f"no privacy ledger at {node.ledger_path}; create it once, explicitly, by adding "
            "--init-ledger (a fresh ledger is a fresh budget, so it is never made silently)"
        ) from None
    problems = []
    if ledger.unit != unit:
        problems.append(f"it accounts per {ledger.unit}, but this node trains per {unit}")
    if ledger.accountant != policy.accountant:
        problems.append(
            f"its accountant is {ledger.accountant}, the policy's is {policy.accountant}"
        )
    ceiling = policy.delta_ceiling(units)
    if ledger.delta > ceiling:
        problems.append(
            f"its δ={ledger.delta:g} is above this node's ceiling {ceiling:g} "
            f"(policy max-delta, and at most 1/{units} units)"
        )
    if problems:
        raise ConfigError(
            f"{node.ledger_path}: does not match this node's policy and data: "
            + "; ".join(problems)
            + " (every round would be declined; initialise a new ledger for this policy)"
        )
    return ledger, False


def _node_settings(settings: ClientSettings, policy: NodePolicy) -> NodeSettings:
    """What the node's ClientApp gets (as node config) for these inputs and this policy."""
    return NodeSettings(
        data_path=settings.data,
        ledger_path=settings.ledger,
        key_file=settings.ledger_key_file,
        anchor_path=settings.ledger_anchor,
        journal_path=settings.journal,
        policy=policy,
        policy_file=settings.policy_file,
    )


def check_client(settings: ClientSettings) -> CheckedNode:
    """Validate every input before anything starts (``--init-ledger``: create the ledger last)."""
    policy = load_node_policy(settings)
    frame = _check_data(settings)
    _check_tls(settings)
    for pin in settings.trusted_fab_sha256:
        if not _SHA256.fullmatch(pin):
            raise ConfigError(
                f"--trusted-fab-sha256: {pin!r} is not a SHA-256 (64 lower-case hex digits)"
            )
    node = _node_settings(settings, policy)
    if NodeSettings.from_node_config(node.to_node_config(), where="ecrec-client") != node:
        raise ConfigError("ecrec-client: the node config does not describe these settings (a bug)")
    if settings.init_ledger:
        _writable_folder(settings.ledger, "privacy ledger")
        _writable_folder(settings.ledger_key_file, "ledger key file")
    else:
        _private(settings.ledger_key_file, "ledger key file")
    _writable_folder(settings.journal, "node journal")
    from ecrec.data.schema import USER_ID

    unit = policy.unit_for(has_user_ids=USER_ID in frame.columns)
    units = _units(frame, unit)
    merchant = str(frame["merchant_id"].iloc[0])
    ledger, created = _open_or_init_ledger(
        settings, node, merchant=merchant, unit=unit, units=units
    )
    return CheckedNode(
        node=node,
        merchant=merchant,
        rows=len(frame),
        units=units,
        unit=unit,
        ledger=ledger,
        created_ledger=created,
    )


def node_config(settings: ClientSettings) -> dict[str, str | float]:
    """The node config flower-supernode gets for these settings (no checks, no ledger)."""
    return _node_settings(settings, load_node_policy(settings)).to_node_config()
