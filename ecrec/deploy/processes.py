"""Start, watch and stop child processes so that none outlives its launcher.

Flower's deployment processes fork their own children, and some detach on
purpose: ``flower-superlink`` starts ``flower-superexec`` in a new session,
which starts ``flwr-serverapp``; ``flower-supernode`` starts a SuperExec that
starts one ``flwr-clientapp`` per message. Killing a process group is
therefore not enough. Every child started here carries a tag in the
environment variable :data:`TAG_VARIABLE` (inherited by everything it starts),
and :meth:`Supervisor.stop_all` ends, in order: each direct child (SIGTERM to
its group, so it can shut down cleanly), then every process still carrying the
tag, then SIGKILL for anything left after the timeout. The tags of nested
supervisors accumulate, so a test can find everything an ``ecrec-server`` it
started has started, however deep.

Signals: :meth:`Supervisor.handle_signals` turns SIGINT and SIGTERM into
:class:`Interrupted` in the main thread, so ``finally`` blocks run and the
children are stopped; an ``atexit`` hook covers every other way out. A launcher
killed outright (SIGKILL, the OOM killer) runs neither, so on Linux every child
also asks the kernel for SIGTERM when its launcher dies (``PR_SET_PDEATHSIG``):
``flower-superlink`` and ``flower-supernode`` have no ``--parent-pid`` of their
own, and without this they outlive the launcher -- a SuperLink that keeps the
port and keeps running the ServerApp, or a SuperNode that keeps the node online
with nothing to run its tasks. Their own children follow through Flower's
``--parent-pid`` monitors.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from ecrec.deploy.ports import ChildFailed, free_port, port_in_use, wait_until
from ecrec.deploy.process_table import (
    TAG_VARIABLE,
    ProcessInfo,
    _alive,
    _signal,
    descendants,
    list_processes,
    tagged_processes,
)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; carries the signal so the exit code can say which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


# --------------------------------------------------------------------------- children

#: ``prctl`` option: the signal the kernel sends a process when its parent thread dies.
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None


_PRCTL = _load_prctl()


def die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGTERM the child when this process dies.

    Hand-written: the standard library has no option for it. The kernel ties the
    signal to the *thread* that starts the child, so children must be started from
    a thread that lives as long as the launcher (both launchers use the main
    thread). ``None`` where the platform has no ``prctl``.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    launcher = os.getpid()

    def hook() -> None:  # runs in the child, between fork and exec: no locks, no imports
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != launcher:  # the launcher died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


@dataclass
class Child:
    """One process started by a :class:`Supervisor`."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path | None = None
    lines: list[str] = field(default_factory=list)  # last lines of output, for error messages
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def tail(self, n: int = 20) -> list[str]:
        return list(self.lines[-n:])

    def wait_output(self, timeout: float = 5.0) -> None:
        """Wait for the output reader to drain (after the process ended)."""
        if self.reader is not None:
            self.reader.join(timeout)


def _pump(
    stream: IO[bytes],
    child: Child,
    log: IO[str] | None,
    on_line: Callable[[str], None] | None,
    keep: int,
) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        child.lines.append(line)
        if len(child.lines) > keep:
            del child.lines[: len(child.lines) - keep]
        if log is not None:
            log.write(line + "\n")
            log.flush()
        if on_line is not None:
            with contextlib.suppress(Exception):  # a display bug must not stop the pump
                on_line(line)
    stream.close()
    if log is not None:
        log.close()


class Supervisor:
    """Owns every process a launcher starts; :meth:`stop_all` leaves none behind."""

    def __init__(self, name: str, *, stop_timeout: float = 15.0) -> None:
        self.name = name
        self.stop_timeout = stop_timeout
        self.tag = f"{name}-{os.getpid()}-{secrets.token_hex(4)}"
        self.children: list[Child] = []
        self._stopping = False
        self._hurry = False
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    # -- environment -------------------------------------------------------------
    def child_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a child: ours + ``extra`` + our tag.

        The interpreter's ``bin`` folder goes first on ``PATH`` because tools
        start their helpers by name (Flower starts ``flower-superexec`` and
        ``flwr-serverapp``); a launcher run as ``.venv/bin/ecrec-server`` without
        an activated venv would otherwise fail with ``FileNotFoundError``.
        """
        env = dict(os.environ)
        env.update(extra or {})
        bin_dir = str(Path(sys.executable).parent)
        path = env.get("PATH", "")
        if bin_dir not in path.split(os.pathsep):
            env["PATH"] = bin_dir + (os.pathsep + path if path else "")
        tags = [t for t in env.get(TAG_VARIABLE, "").split(":") if t]
        env[TAG_VARIABLE] = ":".join([*tags, self.tag])
        return env

    # -- starting ------------------------------------------------------------------
    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_path: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        keep_lines: int = 200,
    ) -> Child:
        """Start ``argv`` in its own session; its output goes to ``log_path``/``on_line``."""
        if self._stopping:
            raise RuntimeError("supervisor is stopping; no new processes")
        log = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("a", encoding="utf-8")
        try:
            popen = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else self.child_env(),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C is forwarded by us, once, in order
                preexec_fn=die_with_parent_hook(),  # and a SIGKILLed launcher takes it along
            )
        except OSError as err:
            if log is not None:
                log.close()
            raise OSError(f"cannot start {argv[0]}: {err.strerror or err}") from err
        child = Child(name=name, argv=list(argv), popen=popen, log_path=log_path)
        assert popen.stdout is not None
        child.reader = threading.Thread(
            target=_pump,
            args=(popen.stdout, child, log, on_line, keep_lines),
            name=f"{name}-output",
            daemon=True,
        )
        child.reader.start()
        with self._lock:
            self.children.append(child)
        return child

    # -- stopping ------------------------------------------------------------------
    def _wait(self, pids: Sequence[int], deadline: float) -> list[int]:
        """Wait until ``pids`` are gone or ``deadline``; return those still alive."""
        alive = list(pids)
        while alive and time.monotonic() < deadline and not self._hurry:
            for child in self.children:
                child.popen.poll()  # reap our own children so they do not linger as zombies
            alive = [pid for pid in alive if _alive(pid)]
            if alive:
                time.sleep(0.1)
        return [pid for pid in alive if _alive(pid)]

    def stop_child(self, child: Child, *, timeout: float | None = None) -> int | None:
        """SIGTERM one child's process group, then SIGKILL after ``timeout``."""
        timeout = self.stop_timeout if timeout is None else timeout
        family = [child.pid] + [p.pid for p in descendants(child.pid)]
        if child.poll() is None:
            try:  # the whole group: the child and the helpers it did not detach
                os.killpg(child.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                _signal(child.pid, signal.SIGTERM)
        left = self._wait(family[:1], time.monotonic() + timeout)
        for pid in left:
            _signal(pid, signal.SIGKILL)
        # Its own children got the parent's shutdown (or notice the parent is gone).
        stragglers = self._wait(family[1:], time.monotonic() + min(timeout, 15.0))
        for pid in stragglers:
            _signal(pid, signal.SIGTERM)
        for pid in self._wait(stragglers, time.monotonic() + 3.0):
            _signal(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=5.0)
        child.wait_output()
        return child.popen.returncode

    def stop_all(self, timeout: float | None = None) -> None:
        """Stop every child (newest first), then everything that still carries our tag."""
        with self._lock:
            if self._stopping and not self.children:
                return
            self._stopping = True
            children = list(reversed(self.children))
        timeout = self.stop_timeout if timeout is None else timeout
        previous = self._quiet_signals()
        try:
            for child in children:
                self.stop_child(child, timeout=timeout)
            self.sweep(timeout=min(timeout, 10.0))
        finally:
            self._restore_signals(previous)
            with self._lock:
                self.children.clear()

    def sweep(self, *, timeout: float = 10.0) -> list[ProcessInfo]:
        """End every process still carrying our tag; returns what had to be ended."""
        found = tagged_processes(self.tag)
        if not found:
            return []
        for info in found:
            _signal(info.pid, signal.SIGTERM)
        left = self._wait([p.pid for p in found], time.monotonic() + timeout)
        for pid in left:
            _signal(pid, signal.SIGKILL)
        self._wait(left, time.monotonic() + 3.0)
        return found

    # -- signals -------------------------------------------------------------------
    def _quiet_signals(self) -> dict[int, Any]:
        """While stopping, a second Ctrl-C means 'hurry' (SIGKILL now), not 'abort cleanup'."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def hurry(_signum: int, _frame: FrameType | None) -> None:
            self._hurry = True

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, hurry)
        return previous

    @staticmethod
    def _restore_signals(previous: Mapping[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    @contextlib.contextmanager
    def handle_signals(self) -> Iterator[Supervisor]:
        """SIGINT/SIGTERM raise :class:`Interrupted`; on the way out, stop everything."""
        previous: dict[int, Any] = {}

        def interrupt(signum: int, _frame: FrameType | None) -> None:
            if not self._stopping:
                raise Interrupted(signum)

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, interrupt)
        try:
            yield self
        finally:
            try:
                self.stop_all()
            finally:
                self._restore_signals(previous)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


__all__ = [
    "TAG_VARIABLE",
    "Child",
    "ChildFailed",
    "Interrupted",
    "ProcessInfo",
    "Supervisor",
    "descendants",
    "die_with_parent_hook",
    "free_port",
    "list_processes",
    "port_in_use",
    "tagged_processes",
    "wait_until",
]
