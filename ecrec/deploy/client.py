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

import os
import tempfile
import time
from pathlib import Path

from rich.console import Console

from ecrec.deploy.client_checks import (
    CheckedNode,
    ClientSettings,
    check_client,
    default_journal,
    default_key_file,
    default_ledger,
    default_ledger_anchor,
    load_node_policy,
    node_config,
)
from ecrec.deploy.client_console import JournalTail, _describe, _Display, journal_line
from ecrec.deploy.flower import (
    FLOWER_ENV,
    SUPERNODE_CONNECTION_ERROR,
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
from ecrec.errors import EcrecError

REFUSED = "the server refused this node (unregistered key, wrong CA or TLS mismatch)"
#: What the node's Runtime API listens on (Flower's default; never another interface).
RUNTIME_HOST = "127.0.0.1"


class SuperNodeError(EcrecError):
    """The SuperNode (or its SuperExec) stopped on its own for a reason other than a refusal."""

    exit_code = 1


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
