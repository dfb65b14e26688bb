"""The task commands on the SuperExec's ``PATH``: ``flwr-clientapp`` runs the guard, every
other task command refuses (and says so in the node journal)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from ecrec.federation.guard_names import (
    GUARD_PREFIX,
    GUARDED_COMMAND,
    JOURNAL_ENV,
    REFUSED_COMMANDS,
)


def refuse_task(command: str) -> int:
    """What a non-ClientApp task command does on a merchant node: refuse, say so, exit 1."""
    journal = os.environ.get(JOURNAL_ENV)
    reason = f"{command} tasks never run on a merchant node"
    if journal:
        from ecrec.node.journal import NodeJournal

        NodeJournal(journal).append("refused", task=command, reason=reason)
    print(f"{GUARD_PREFIX}: refused task: {reason}", file=sys.stderr, flush=True)
    return 1


def write_task_shims(folder: Path, *, python: str | None = None) -> Path:
    """A private ``bin`` folder: ``flwr-clientapp`` runs the guard, other task commands refuse.

    Put first on the SuperExec's ``PATH`` (Flower starts task commands by name). Each
    shim execs this interpreter with ``-I`` (isolated: no current folder or
    ``PYTHONPATH`` on ``sys.path``, so nothing beside the task can shadow the installed
    packages) and ``-u`` (unbuffered, so refusals reach the log at once).
    """
    python = python or sys.executable
    folder.mkdir(parents=True, exist_ok=True)
    runner = f"exec {shlex.quote(python)} -I -u -m ecrec.federation.guard"
    scripts = {GUARDED_COMMAND: f'{runner} "$@"\n'}
    scripts.update({name: f'{runner} --refuse-task {name} "$@"\n' for name in REFUSED_COMMANDS})
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
        path.chmod(0o755)
    return folder
