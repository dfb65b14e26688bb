"""``ecrec-client``: a merchant's node, as a supervised Flower SuperNode.

Everything the node is allowed to do is decided here, on the merchant's
machine: which data file, which privacy budget, which ledger. These go into
the SuperNode's *node config*, which the server can read but not change; the
ClientApp enforces the budget from it. Before Flower starts, inputs are
checked (data contract, key and CA files, an existing ledger's integrity) and
the server's TLS is probed, so mistakes surface as one line instead of a
SuperNode retrying for ever.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ecrec.certs import check_ca_cert, check_node_private_key
from ecrec.deploy.flower import (
    FLOWER_ENV,
    SUPERNODE_CONNECTION_ERROR,
    SUPERNODE_ID_LINE,
    explain_supernode_exit,
    supernode_argv,
    write_node_config,
)
from ecrec.deploy.net import Address, NodeRefusedError, probe_tls, wait_reachable
from ecrec.deploy.processes import Child, Supervisor, free_port
from ecrec.errors import ConfigError, DataError, EcrecError

REFUSED = "the server refused this node (unregistered key, wrong CA or TLS mismatch)"
_ROUND_LINE = re.compile(r"\[RUN (\d+), ROUND (\d+)\]")


class SuperNodeError(EcrecError):
    """The SuperNode stopped on its own for a reason other than a refusal."""

    exit_code = 1


@dataclass(frozen=True)
class ClientSettings:
    server: Address
    data: Path
    budget_epsilon: float
    key: Path | None
    ca: Path | None
    insecure: bool
    ledger: Path
    ledger_key_file: Path | None
    log_file: Path
    runtime_port: int = 0
    connect_timeout: float = 300.0
    verbose: bool = False


def default_ledger(data: Path) -> Path:
    """Where the ClientApp keeps the ledger unless told otherwise (next to the data)."""
    return data.with_suffix(".ledger.json")


def check_client(settings: ClientSettings) -> str:
    """Validate every input before anything starts; returns the merchant id."""
    from ecrec.data.io import read_impressions

    if not (math.isfinite(settings.budget_epsilon) and settings.budget_epsilon > 0):
        raise ConfigError(f"--budget-epsilon must be a number > 0, got {settings.budget_epsilon}")
    if not settings.data.is_file():
        raise DataError(f"{settings.data}: data file not found")
    frame = read_impressions(settings.data)
    merchants = sorted(frame["merchant_id"].astype(str).unique())
    if len(merchants) != 1:
        raise DataError(
            f"{settings.data}: a node serves one merchant, "
            f"found {len(merchants)} merchant_id values"
        )
    if settings.insecure:
        for flag, value in (("--key", settings.key), ("--ca", settings.ca)):
            if value is not None:
                raise ConfigError(
                    f"--insecure cannot be combined with {flag}: node authentication and "
                    "server verification need TLS"
                )
    else:
        if settings.ca is None:
            raise ConfigError(
                "--ca is required (the ca.crt from the server operator), or --insecure"
            )
        if settings.key is None:
            raise ConfigError(
                "--key is required (your node's private key; make one with "
                "`ecrec certs node-key --out PREFIX`), or --insecure"
            )
        check_ca_cert(settings.ca)
        check_node_private_key(settings.key)
        if settings.key.stat().st_mode & 0o077:
            raise ConfigError(
                f"{settings.key}: private key is readable by others; run `chmod 600 {settings.key}`"
            )
    key_bytes = None
    if settings.ledger_key_file is not None:
        from ecrec.privacy.ledger import read_key_file

        key_bytes = read_key_file(settings.ledger_key_file)
    if settings.ledger.exists():
        from ecrec.privacy.ledger import PrivacyLedger

        PrivacyLedger.load(settings.ledger, key=key_bytes)  # corrupt: fail closed, here
    else:
        parent = settings.ledger.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not os.access(parent, os.W_OK):
            raise ConfigError(f"{settings.ledger}: cannot create the privacy ledger here")
    return merchants[0]


def node_config(settings: ClientSettings) -> dict[str, str | float]:
    values: dict[str, str | float] = {
        "data-path": str(settings.data),
        "budget-epsilon": float(settings.budget_epsilon),
        "ledger-path": str(settings.ledger),
    }
    if settings.ledger_key_file is not None:
        values["ledger-key-file"] = str(settings.ledger_key_file)
    return values


class _Display:
    """Turns the SuperNode's log into a few lines a merchant can act on."""

    def __init__(self, console: Console, settings: ClientSettings) -> None:
        self.console = console
        self.settings = settings
        self.node_id = ""
        self.last_round: tuple[str, str] | None = None
        self.retry_warned = False

    def __call__(self, line: str) -> None:
        if self.settings.verbose:
            self.console.print(line, markup=False, highlight=False)
        if match := SUPERNODE_ID_LINE.search(line):
            self.node_id = match.group(1)
            self.console.print(
                f"connected to {self.settings.server} as SuperNode {self.node_id}; "
                "waiting for the server's rounds (Ctrl-C to leave)"
            )
        elif match := _ROUND_LINE.search(line):
            current = (match.group(1), match.group(2))
            if current != self.last_round:
                self.last_round = current
                self.console.print(f"run {current[0]}: round {current[1]}")
        elif "Connection attempt failed" in line:
            if not self.retry_warned and not self.settings.verbose:
                self.retry_warned = True
                self.console.print("connection to the server lost; retrying...")
        elif "ERROR" in line and not self.settings.verbose:
            self.console.print(line.strip(), markup=False, highlight=False)


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


def run_client(settings: ClientSettings, *, console: Console | None = None) -> int:
    """Check, probe, then run the SuperNode until it stops or we are signalled."""
    console = console or Console(stderr=True, soft_wrap=True)
    merchant = check_client(settings)
    console.print(
        f"merchant {merchant}: {settings.data} (ε budget {settings.budget_epsilon:g}, "
        f"ledger {settings.ledger})"
    )

    def waiting(seconds: float) -> None:
        if int(seconds) % 30 < 2:
            console.print(f"waiting for the server at {settings.server} ({seconds:.0f} s)...")

    wait_reachable(settings.server, timeout=settings.connect_timeout, on_wait=waiting)
    probe_tls(settings.server, ca=settings.ca, insecure=settings.insecure)

    supervisor = Supervisor("ecrec-client")
    runtime_port = settings.runtime_port or free_port("127.0.0.1")
    settings.log_file.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="ecrec-client-") as scratch,
        supervisor.handle_signals(),
    ):
        config_file = write_node_config(Path(scratch) / "node-config.toml", node_config(settings))
        argv = supernode_argv(
            settings.server,
            ca=settings.ca,
            key=settings.key,
            node_config=config_file,
            runtime_port=runtime_port,
        )
        try:
            child = supervisor.start(
                "flower-supernode",
                argv,
                env=supervisor.child_env(FLOWER_ENV),
                log_path=settings.log_file,
                on_line=_Display(console, settings),
            )
        except OSError as err:
            raise SuperNodeError(str(err)) from None
        while child.poll() is None:
            time.sleep(0.3)
        child.wait_output()
        if child.poll() != 0:
            raise _exit_error(child, settings)
    console.print("the SuperNode has shut down")
    return 0


__all__ = [
    "REFUSED",
    "ClientSettings",
    "SuperNodeError",
    "check_client",
    "default_ledger",
    "node_config",
    "run_client",
]
