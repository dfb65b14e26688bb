"""``ecrec-client``: a merchant's node, as a supervised Flower SuperNode that runs only ecrec.

Everything the node is allowed to do is decided here, on the merchant's machine:
which data, which policy and budget (:mod:`ecrec.node.policy`), which ledger, key,
anchor and journal. They reach the ClientApp as the SuperNode's *node config*
(:meth:`ecrec.node.NodeSettings.to_node_config`), which the server can read but not
change. Before Flower starts, every input is checked (policy file, data contract and
plain PII, TLS files, ledger key, the ledger's seal and anchor, and that the ledger
matches the policy and data), so mistakes surface as one line and a non-zero exit.
``--init-ledger`` is the merchant's explicit act that creates the ledger; without it
a missing ledger is an error (a fresh ledger would be a fresh budget).

What runs (process isolation, so that the guard -- not Flower's ``flwr-clientapp`` --
executes every task, and the node's Runtime API is authenticated)::

    ecrec-client
      flower-supernode --isolation process --superexec-auth-secret-file S   (Fleet + Runtime API)
      flower-superexec --superexec-auth-secret-file S   (PATH: private bin first)
        flwr-clientapp -> python -I -m ecrec.federation.guard   (one per message)

``S`` is 32 random bytes made for this launch (mode 0600, in a private temporary
folder). The console shows, per round, what the node did -- ``round N: trained`` or
``round N: declined: <reason>`` from the node's journal, and the guard's
``ecrec-node-guard: refused ...`` lines for any app that is not the installed ecrec.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from ecrec.certs import check_ca_cert, check_node_private_key
from ecrec.deploy.flower import (
    FLOWER_ENV,
    SUPERNODE_CONNECTION_ERROR,
    SUPERNODE_ID_LINE,
    explain_supernode_exit,
    superexec_argv,
    supernode_argv,
    write_node_config,
    write_secret,
)
from ecrec.deploy.net import Address, NodeRefusedError, probe_tls, wait_reachable
from ecrec.deploy.processes import (
    Child,
    ChildFailed,
    Supervisor,
    free_port,
    port_in_use,
    wait_until,
)
from ecrec.errors import ConfigError, DataError, EcrecError, LedgerMissingError
from ecrec.node.settings import NodeSettings, default_anchor

if TYPE_CHECKING:
    import pandas as pd

    from ecrec.node.policy import NodePolicy
    from ecrec.privacy.ledger import PrivacyLedger

REFUSED = "the server refused this node (unregistered key, wrong CA or TLS mismatch)"
_ROUND_LINE = re.compile(r"\[RUN (\d+), ROUND (\d+)\]")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: What the node's Runtime API listens on (Flower's default; never another interface).
RUNTIME_HOST = "127.0.0.1"


class SuperNodeError(EcrecError):
    """The SuperNode (or its SuperExec) stopped on its own for a reason other than a refusal."""

    exit_code = 1


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
    node = NodeSettings(
        data_path=settings.data,
        ledger_path=settings.ledger,
        key_file=settings.ledger_key_file,
        anchor_path=settings.ledger_anchor,
        journal_path=settings.journal,
        policy=policy,
        policy_file=settings.policy_file,
    )
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
    policy = load_node_policy(settings)
    return NodeSettings(
        data_path=settings.data,
        ledger_path=settings.ledger,
        key_file=settings.ledger_key_file,
        anchor_path=settings.ledger_anchor,
        journal_path=settings.journal,
        policy=policy,
        policy_file=settings.policy_file,
    ).to_node_config()


# --------------------------------------------------------------------------- console


def journal_line(record: dict[str, Any]) -> str | None:
    """The console line for one node-journal record (``None``: nothing to show)."""
    event = record.get("event")
    server_round = record.get("round")
    where = f"round {server_round}" if server_round is not None else "a request"
    if event == "trained":
        spent, budget = record.get("epsilon_spent"), record.get("budget_epsilon")
        if isinstance(spent, int | float) and isinstance(budget, int | float):
            return (
                f"{where}: trained (ε {spent:.4g} of {budget:g} spent, "
                f"per {record.get('unit', '?')}, {record.get('accountant', '?')})"
            )
        return f"{where}: trained"
    if event == "declined":
        return f"{where}: declined: {record.get('reason', 'no reason recorded')}"
    return None  # "refused": the guard's own stderr line says it (see _GuardDisplay)


class JournalTail(threading.Thread):
    """Follows the node journal from its current end; calls ``on_record`` per new record."""

    def __init__(
        self, path: Path, on_record: Callable[[dict[str, Any]], None], *, interval: float = 0.5
    ) -> None:
        super().__init__(name="journal-tail", daemon=True)
        self.path = path
        self.on_record = on_record
        self.interval = interval
        self.stopped = threading.Event()
        self.offset = path.stat().st_size if path.exists() else 0

    def poll(self) -> None:
        """Read every complete new line (a torn last line waits for its end)."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for raw in complete.splitlines():
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                self.on_record(record)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a display problem must never stop the node
                continue
        self.poll()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5.0)


class _Display:
    """Turns the SuperNode's log and the node journal into lines a merchant can act on."""

    def __init__(self, console: Console, settings: ClientSettings) -> None:
        self.console = console
        self.settings = settings
        self.node_id = ""
        self.last_round: tuple[str, str] | None = None
        self.retry_warned = False
        self._lock = threading.Lock()

    def show(self, text: str) -> None:
        with self._lock:
            self.console.print(text, markup=False, highlight=False)

    def __call__(self, line: str) -> None:
        if self.settings.verbose:
            self.show(line)
        if match := SUPERNODE_ID_LINE.search(line):
            self.node_id = match.group(1)
            self.show(
                f"connected to {self.settings.server} as SuperNode {self.node_id}; "
                "waiting for the server's rounds (Ctrl-C to leave)"
            )
        elif match := _ROUND_LINE.search(line):
            current = (match.group(1), match.group(2))
            if current != self.last_round:
                self.last_round = current
                self.show(f"run {current[0]}: round {current[1]}")
        elif "Connection attempt failed" in line:
            if not self.retry_warned and not self.settings.verbose:
                self.retry_warned = True
                self.show("connection to the server lost; retrying...")
        elif "ERROR" in line and not self.settings.verbose:
            self.show(line.strip())

    def guard_line(self, line: str) -> None:
        """SuperExec/ClientApp output: only the guard's refusals (the rest is in the log)."""
        from ecrec.federation.guard import GUARD_PREFIX

        if self.settings.verbose:
            self.show(line)
        elif (start := line.find(f"{GUARD_PREFIX}:")) != -1:
            self.show(line[start:].strip())

    def journal_record(self, record: dict[str, Any]) -> None:
        text = journal_line(record)
        if text is not None:
            self.show(text)


def _exit_error(child: Child, settings: ClientSettings) -> EcrecError:
    code, reason = explain_supernode_exit(child.tail(60))
    if code == SUPERNODE_CONNECTION_ERROR:
        hint = ""
        if "2004" in reason or "activate" in reason.lower():
            public = settings.key.with_suffix(".pub").name if settings.key else "your key"
            hint = f"; has the server operator registered {public} (server.node-keys)?"
        elif "CERTIFICATE_VERIFY_FAILED" in reason:
            hint = f"; does --ca {settings.ca} belong to this server?"
        flower = f": Flower says {reason!r}" if reason else ""
        return NodeRefusedError(f"{REFUSED}{flower}{hint}")
    detail = reason or (child.tail(1) or ["no output"])[0].strip()
    return SuperNodeError(
        f"flower-supernode stopped (exit {child.poll()}"
        + (f", Flower code {code}" if code else "")
        + f"): {detail}; log: {settings.log_file}"
    )


def _describe(checked: CheckedNode, settings: ClientSettings) -> list[str]:
    node, ledger = checked.node, checked.ledger
    policy = node.policy
    source = f"policy {settings.policy_file}" if settings.policy_file else "default policy"
    lines = [
        f"merchant {checked.merchant}: {node.data_path} ({checked.rows} rows, "
        f"{checked.units} DP units per {checked.unit}; {source}, ε budget "
        f"{policy.budget_epsilon:g})"
    ]
    made = "created" if checked.created_ledger else "verified"
    lines.append(
        f"{made} privacy ledger {ledger.path}: ε {ledger.spent_epsilon():.4g} of "
        f"{policy.budget_epsilon:g} spent (δ={ledger.delta:g}, {ledger.accountant}, "
        f"per {ledger.unit}); key {node.key_file}, anchor {node.anchor_path}"
    )
    pins = settings.trusted_fab_sha256
    lines.append(
        f"node journal {node.journal_path}; this node runs only the installed ecrec ClientApp"
        + (f" from {len(pins)} pinned FAB(s)" if pins else "")
    )
    return lines


def run_client(settings: ClientSettings, *, console: Console | None = None) -> int:
    """Check, probe, then run the SuperNode and its guarded SuperExec until stopped."""
    from ecrec.federation.guard import JOURNAL_ENV, TRUSTED_FAB_ENV, write_task_shims

    console = console or Console(stderr=True, soft_wrap=True)
    checked = check_client(settings)
    for line in _describe(checked, settings):
        console.print(line, markup=False, highlight=False)

    def waiting(seconds: float) -> None:
        if int(seconds) % 30 < 2:
            console.print(f"waiting for the server at {settings.server} ({seconds:.0f} s)...")

    wait_reachable(settings.server, timeout=settings.connect_timeout, on_wait=waiting)
    probe_tls(settings.server, ca=settings.ca, insecure=settings.insecure)

    supervisor = Supervisor("ecrec-client")
    runtime_port = settings.runtime_port or free_port(RUNTIME_HOST)
    settings.log_file.parent.mkdir(parents=True, exist_ok=True)
    display = _Display(console, settings)
    tail = JournalTail(checked.node.journal_path, display.journal_record)
    with (
        tempfile.TemporaryDirectory(prefix="ecrec-client-") as scratch_name,  # mode 0700
        supervisor.handle_signals(),
    ):
        scratch = Path(scratch_name)
        config_file = write_node_config(scratch / "node-config.toml", checked.node.to_node_config())
        secret = write_secret(scratch / "superexec.secret")
        shims = write_task_shims(scratch / "bin")
        try:
            supernode = supervisor.start(
                "flower-supernode",
                supernode_argv(
                    settings.server,
                    ca=settings.ca,
                    key=settings.key,
                    node_config=config_file,
                    runtime_port=runtime_port,
                    superexec_secret=secret,
                ),
                env=supervisor.child_env(FLOWER_ENV),
                log_path=settings.log_file,
                on_line=display,
            )
            _wait_runtime_api(supernode, runtime_port)
            env = supervisor.child_env(
                {
                    **FLOWER_ENV,
                    JOURNAL_ENV: str(checked.node.journal_path),
                    TRUSTED_FAB_ENV: ",".join(settings.trusted_fab_sha256),
                }
            )
            env["PATH"] = str(shims) + os.pathsep + env["PATH"]  # only this entry is added
            superexec = supervisor.start(
                "flower-superexec",
                [
                    *superexec_argv(Address(RUNTIME_HOST, runtime_port), ca=None, secret=secret),
                    "--parent-pid",
                    str(os.getpid()),  # it ends if ecrec-client is killed outright
                ],
                env=env,
                log_path=settings.log_file,
                on_line=display.guard_line,
            )
        except OSError as err:
            raise SuperNodeError(str(err)) from None
        tail.start()
        try:
            while supernode.poll() is None and superexec.poll() is None:
                time.sleep(0.3)
        finally:
            tail.stop()
        if supernode.poll() is not None:
            supernode.wait_output()
            if supernode.poll() != 0:
                raise _exit_error(supernode, settings)
        else:  # the SuperExec ended under a running SuperNode: no task could run any more
            superexec.wait_output()
            last = next((ln.strip() for ln in reversed(superexec.tail(40)) if ln.strip()), "")
            raise SuperNodeError(
                f"flower-superexec stopped (exit {superexec.poll()}): {last or 'no output'}; "
                f"log: {settings.log_file}"
            )
    console.print("the SuperNode has shut down")
    return 0


def _wait_runtime_api(supernode: Child, port: int, *, timeout: float = 120.0) -> None:
    """The SuperExec may only start once the SuperNode's Runtime API listens."""

    def ended() -> str | None:
        return "stopped" if supernode.poll() is not None else None

    try:
        up = wait_until(lambda: port_in_use(RUNTIME_HOST, port), timeout=timeout, abort=ended)
    except ChildFailed:
        return  # the caller reports the SuperNode's own exit reason
    if not up:
        raise SuperNodeError(
            f"flower-supernode did not open its Runtime API on {RUNTIME_HOST}:{port} "
            f"within {timeout:.0f} s"
        )


__all__ = [
    "REFUSED",
    "RUNTIME_HOST",
    "CheckedNode",
    "ClientSettings",
    "JournalTail",
    "SuperNodeError",
    "check_client",
    "default_journal",
    "default_key_file",
    "default_ledger",
    "default_ledger_anchor",
    "journal_line",
    "load_node_policy",
    "node_config",
    "run_client",
]
