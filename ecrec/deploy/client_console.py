"""What ecrec-client shows: the node's inputs, the SuperNode's log and the node journal as
lines a merchant can act on (``round N: trained`` / ``declined: <reason>``)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from ecrec.deploy.client_checks import CheckedNode, ClientSettings
from ecrec.deploy.flower import SUPERNODE_ID_LINE

_ROUND_LINE = re.compile(r"\[RUN (\d+), ROUND (\d+)\]")


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
