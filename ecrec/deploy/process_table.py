"""The process table (Linux ``/proc``): which processes carry a supervisor's tag, a
process's descendants, whether a pid is alive. Hand-written: psutil is not a
dependency, and these few reads of ``/proc/<pid>/stat`` and ``environ`` are all the
supervisor needs."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Colon-separated tags of every supervisor above a process.
TAG_VARIABLE = "ECREC_PROCESS_TAGS"


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    state: str
    cmdline: str


def _proc_stat(pid: int) -> tuple[int, str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return int(rest[1]), rest[0]


def list_processes() -> list[ProcessInfo]:
    """Every visible process (Linux ``/proc``; ``ps`` elsewhere)."""
    proc = Path("/proc")
    out: list[ProcessInfo] = []
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _proc_stat(pid)
            if stat is None:
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = ""
            out.append(ProcessInfo(pid, stat[0], stat[1], cmd.strip()))
        return out
    try:  # pragma: no cover - non-Linux
        text = subprocess.run(
            ["ps", "-A", "-o", "pid=,ppid=,stat=,command="],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return out
    for line in text.splitlines():  # pragma: no cover - non-Linux
        parts = line.split(None, 3)
        if len(parts) >= 3:
            out.append(
                ProcessInfo(
                    int(parts[0]), int(parts[1]), parts[2][:1], parts[3] if len(parts) > 3 else ""
                )
            )
    return out


def _has_tag(pid: int, tag: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    for item in environ.split(b"\0"):
        if item.startswith(TAG_VARIABLE.encode() + b"="):
            return tag.encode() in item.split(b"=", 1)[1].split(b":")
    return False


def tagged_processes(tag: str) -> list[ProcessInfo]:
    """Live (non-zombie) processes carrying ``tag``, however they were started."""
    me = os.getpid()
    return [p for p in list_processes() if p.pid != me and p.state != "Z" and _has_tag(p.pid, tag)]


def descendants(pid: int, table: Sequence[ProcessInfo] | None = None) -> list[ProcessInfo]:
    """Live descendants of ``pid`` (children first found, breadth first)."""
    table = list_processes() if table is None else table
    children: dict[int, list[ProcessInfo]] = {}
    for info in table:
        children.setdefault(info.ppid, []).append(info)
    out: list[ProcessInfo] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            if child.state != "Z":
                out.append(child)
            queue.append(child.pid)
    return out


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    if stat is not None:
        return stat[1] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return not Path("/proc").is_dir()
