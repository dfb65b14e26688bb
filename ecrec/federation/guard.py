"""The node's ClientApp runner: a merchant node runs only the ClientApp its merchant installed.

Flower 1.42's SuperNode runs whatever app the SuperLink delivers: ``flwr-clientapp``
unpacks the FAB (the app bundle) into ``$FLWR_HOME/apps``, puts that folder first on
``sys.path`` and imports the ``clientapp`` its ``pyproject.toml`` names. A hostile
server (or anyone who can submit a run to it) therefore runs its own code next to the
merchant's data -- and even a FAB that names the ecrec component can ship its own
``ecrec_client/`` package, which would shadow the installed one.

``python -m ecrec.federation.guard`` is a drop-in for ``flwr-clientapp`` (same
arguments; ``ecrec-client`` puts a ``flwr-clientapp`` that execs it first on the
SuperExec's ``PATH``). It reuses Flower's own task runner
(:func:`flwr.supernode.runtime.run_clientapp.run_clientapp`: Runtime API client,
heartbeats, error replies, exit codes) but, in this process only, replaces the two
names that runner uses to get the app's code:

* ``install_from_fab`` -> :meth:`Gate.verify`: the FAB is checked in memory
  (:func:`verify_fab`) and never unpacked. Anything that does not name exactly the
  installed ecrec ClientApp is refused with a one-line reason naming the app; the
  refusal goes to the node's journal, to stderr (``ecrec-client`` shows it) and, as
  the task's error reply, to the server.
* ``get_load_client_app_fn`` -> :meth:`Gate.loader`: imports
  ``ecrec_client.client_app:app`` by name from this interpreter's installation, with no
  FAB folder on ``sys.path``, and only for the FAB that was verified.

A third name, ``pull_task_input``, is wrapped only to remember which run, round and FAB
the task is for (journal, console, hash cross-check); it is called unchanged.

Why this and not Flower's FAB verification: a SuperNode's ``--trusted-entities`` accepts
only FABs the SuperLink marks as licensed Flower Hub apps, signed by a listed key
(``fab.verifications["valid_license"]`` is set only for Hub downloads). A self-hosted
SuperLink with a locally submitted FAB -- every offline ecrec deployment -- is refused
outright, so that option cannot be used. Refusing to run FAB code at all is the
equivalent for this deployment: the code that touches the merchant's data is the code
the merchant installed, and a FAB is only a request naming it.

Tasks of other types (``flwr-serverapp``, ``flwr-model``, ...) have no business on a
merchant node; :func:`write_task_shims` makes each of those names refuse too.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import sys
import tomllib
import zipfile
import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecrec.errors import EcrecError
from ecrec.federation.client import CLIENT_COMPONENT
from ecrec.federation.guard_names import (
    GUARD_PREFIX,
    GUARDED_COMMAND,
    JOURNAL_ENV,
    REFUSED_COMMANDS,
    TRUSTED_FAB_ENV,
)
from ecrec.federation.task_shims import refuse_task, write_task_shims

#: Flower's runtime-dependency flag: it would ``uv sync`` the FAB's dependencies.
_DEPENDENCY_FLAG = "--allow-runtime-dependency-installation"
#: A FAB's pyproject.toml is a few KiB; a bigger one is not read (decompression bomb).
_MAX_PYPROJECT_BYTES = 1 << 20


class FabRefused(EcrecError):
    """The node refuses to run the app a task names; ``str()`` is the one-line reason."""

    exit_code = 1

    def __init__(self, app: FabIdentity, reason: str) -> None:
        self.app = app
        self.reason = reason
        super().__init__(f"refused app {app}: {reason}")


@dataclass(frozen=True)
class FabIdentity:
    """Who a FAB says it is (from its own pyproject), and its content hash."""

    publisher: str
    name: str
    version: str
    sha256: str

    def __str__(self) -> str:
        return f"{self.publisher}/{self.name} {self.version} (FAB sha256 {self.sha256})"


def _text(value: Any) -> str:
    return value if isinstance(value, str) and value else "?"


def _section(document: Any, *keys: str) -> Any:
    for key in keys:
        document = document.get(key) if isinstance(document, dict) else None
    return document


def verify_fab(
    content: bytes,
    *,
    trusted_sha256: Collection[str] = (),
    component: str = CLIENT_COMPONENT,
) -> FabIdentity:
    """The FAB's identity if this node may serve it, else :class:`FabRefused`.

    Rules: the FAB is a readable zip holding a ``pyproject.toml`` (valid TOML) whose
    ``[tool.flwr.app.components] clientapp`` is exactly ``component``; with pins, its
    SHA-256 is one of them. Nothing in the FAB is unpacked or imported -- a FAB that
    passes still runs only the installed component.
    """
    sha256 = hashlib.sha256(content).hexdigest()
    unknown = FabIdentity("?", "?", "?", sha256)
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            try:
                info = archive.getinfo("pyproject.toml")
            except KeyError:
                raise FabRefused(unknown, "the FAB has no pyproject.toml") from None
            if info.file_size > _MAX_PYPROJECT_BYTES:
                raise FabRefused(unknown, "the FAB's pyproject.toml is over 1 MiB")
            raw = archive.read(info)
    except FabRefused:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, ValueError) as err:
        # RuntimeError: encrypted entry; NotImplementedError (a RuntimeError): unknown
        # compression; ValueError: a malformed header.
        detail = f"{type(err).__name__}: {err}"
        raise FabRefused(unknown, f"the FAB is not a readable zip archive ({detail})") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise FabRefused(unknown, f"the FAB's pyproject.toml is not valid TOML ({err})") from None
    app = FabIdentity(
        publisher=_text(_section(document, "tool", "flwr", "app", "publisher")),
        name=_text(_section(document, "project", "name")),
        version=_text(_section(document, "project", "version")),
        sha256=sha256,
    )
    if trusted_sha256 and sha256 not in trusted_sha256:
        raise FabRefused(app, "its FAB sha256 is not one of this node's --trusted-fab-sha256 pins")
    named = _section(document, "tool", "flwr", "app", "components", "clientapp")
    if named != component:
        shown = repr(named) if isinstance(named, str) else "missing"
        raise FabRefused(
            app, f"its clientapp is {shown}; this node runs only the installed {component}"
        )
    return app


def trusted_pins(text: str | None) -> frozenset[str]:
    """The FAB pins from :data:`TRUSTED_FAB_ENV` (lower-case hex, comma-separated)."""
    return frozenset(p.strip().lower() for p in (text or "").split(",") if p.strip())


def _under(path: str | Path, folder: Path) -> bool:
    try:
        Path(path or ".").resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def load_installed_client_app(component: str = CLIENT_COMPONENT, *, apps_dir: Path) -> Any:
    """Import ``component`` from this installation; never from ``apps_dir`` (unpacked FABs)."""
    from flwr.clientapp import ClientApp

    unsafe = [entry for entry in sys.path if _under(entry, apps_dir)]
    if unsafe:
        raise RuntimeError(f"{GUARD_PREFIX}: FAB folder on sys.path: {unsafe[0]}")
    module_name, _, attribute = component.partition(":")
    module = importlib.import_module(module_name)
    origin = getattr(module, "__file__", None) or ""
    if _under(origin, apps_dir):
        raise RuntimeError(f"{GUARD_PREFIX}: {module_name} was imported from a FAB: {origin}")
    app = getattr(module, attribute)
    if not isinstance(app, ClientApp):
        raise RuntimeError(f"{GUARD_PREFIX}: {component} is not a ClientApp")
    return app


@dataclass
class _Task:
    run_id: int
    server_round: int | None
    message_type: str
    fab_hash: str


class Gate:
    """One ClientApp task's checks, installed into Flower's runner by :func:`run_guarded`."""

    def __init__(
        self,
        *,
        journal_path: Path | None,
        trusted_sha256: Collection[str] = (),
        apps_dir: Path,
        component: str = CLIENT_COMPONENT,
    ) -> None:
        self.journal_path = journal_path
        self.trusted_sha256 = frozenset(trusted_sha256)
        self.apps_dir = apps_dir
        self.component = component
        self.task: _Task | None = None
        self.verified: FabIdentity | None = None

    # -- the three names Flower's runner calls --------------------------------------
    def remember(self, pull: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ``pull_task_input`` so the gate knows the task's run, round and FAB hash."""

        def pull_and_remember(*args: Any, **kwargs: Any) -> Any:
            message, context, run, fab = pull(*args, **kwargs)
            group = str(message.metadata.group_id or "")
            self.task = _Task(
                run_id=int(run.run_id),
                server_round=int(group) if group.isdigit() else None,
                message_type=str(message.metadata.message_type),
                fab_hash=str(fab.hash_str),
            )
            return message, context, run, fab

        return pull_and_remember

    def verify(self, fab_file: Any, *_args: Any, **_kwargs: Any) -> Path:
        """Stands in for ``install_from_fab``: verify, unpack nothing, or refuse."""
        content = fab_file if isinstance(fab_file, bytes) else Path(fab_file).read_bytes()
        try:
            app = verify_fab(content, trusted_sha256=self.trusted_sha256, component=self.component)
            if self.task is not None and self.task.fab_hash != app.sha256:
                raise FabRefused(app, "the FAB's content does not match the hash it came with")
        except FabRefused as refused:
            self._record(refused)
            raise
        self.verified = app
        return self.apps_dir / "not-installed"  # Flower's runner ignores the return value

    def loader(self, *_args: Any, **_kwargs: Any) -> Callable[[str, str, str], Any]:
        """Stands in for ``get_load_client_app_fn``: the installed app, for the verified FAB."""

        def load(_fab_id: str, _fab_version: str, fab_hash: str) -> Any:
            if self.verified is None or self.verified.sha256 != fab_hash:
                unverified = FabIdentity("?", "?", "?", fab_hash)
                refused = FabRefused(unverified, "asked to load a FAB that was not verified")
                self._record(refused)
                raise refused
            return load_installed_client_app(self.component, apps_dir=self.apps_dir)

        return load

    # -- reporting ---------------------------------------------------------------------
    def _where(self) -> str:
        if self.task is None:
            return ""
        where = f" in run {self.task.run_id}"
        if self.task.server_round is not None:
            where += f" round {self.task.server_round}"
        return where + f" ({self.task.message_type} message)"

    def _record(self, refused: FabRefused) -> None:
        """Journal first (fsync'd), then the one stderr line ecrec-client shows."""
        app = refused.app
        if self.journal_path is not None:
            from ecrec.node.journal import NodeJournal

            task = self.task
            NodeJournal(self.journal_path).append(
                "refused",
                round=task.server_round if task else None,
                run=task.run_id if task else None,
                message_type=task.message_type if task else None,
                app=f"{app.publisher}/{app.name} {app.version}",
                fab_sha256=app.sha256,
                reason=refused.reason,
            )
        print(
            f"{GUARD_PREFIX}: refused app {app}{self._where()}: {refused.reason}",
            file=sys.stderr,
            flush=True,
        )


#: The names of Flower's runner module that the guard replaces or wraps.
RUNNER_NAMES = ("pull_task_input", "install_from_fab", "get_load_client_app_fn")


class GuardUnsupported(EcrecError):
    """This Flower's ClientApp runner no longer looks up the names the guard replaces."""

    exit_code = 1


def check_runner(runner: Any) -> None:
    """Fail closed unless ``runner.run_clientapp`` still looks up :data:`RUNNER_NAMES` in its
    module (a Flower upgrade that imports them elsewhere would silently bypass the guard)."""
    used = set(runner.run_clientapp.__code__.co_names)
    missing = [name for name in RUNNER_NAMES if not hasattr(runner, name) or name not in used]
    if missing:
        raise GuardUnsupported(
            f"this Flower's run_clientapp no longer calls {', '.join(missing)} through its "
            "module; the guard cannot vouch for what it would run, so it runs nothing"
        )


def run_guarded(argv: Sequence[str], *, environ: dict[str, str] | None = None) -> None:
    """``flwr-clientapp ARGV`` through Flower's runner, with the :class:`Gate` in place."""
    import flwr.supernode.runtime.run_clientapp as runner
    from flwr.common.constant import APP_DIR
    from flwr.supercore.utils import get_flwr_home
    from flwr.supernode.cli.flwr_clientapp import flwr_clientapp

    check_runner(runner)
    environ = dict(os.environ if environ is None else environ)
    journal = environ.get(JOURNAL_ENV)
    gate = Gate(
        journal_path=Path(journal) if journal else None,
        trusted_sha256=trusted_pins(environ.get(TRUSTED_FAB_ENV)),
        apps_dir=get_flwr_home() / APP_DIR,
    )
    # Only in this process: Flower's runner looks these names up in its module when it runs.
    runner.pull_task_input = gate.remember(runner.pull_task_input)
    runner.install_from_fab = gate.verify
    runner.get_load_client_app_fn = gate.loader
    # The FAB is never unpacked, so there is nothing whose dependencies could be
    # installed; ecrec-client never passes the flag, a stray one is dropped.
    args = [a for a in argv if a != _DEPENDENCY_FLAG]
    sys.argv = [GUARDED_COMMAND, *args]
    flwr_clientapp()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # Without -I, ``python -m`` puts the current folder first on sys.path; drop it.
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", cwd)]
    if args[:1] == ["--refuse-task"]:
        return refuse_task(args[1] if len(args) > 1 else "unknown")
    try:
        run_guarded(args)
    except GuardUnsupported as err:
        print(f"{GUARD_PREFIX}: refused task: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


__all__ = [
    "GUARDED_COMMAND",
    "GUARD_PREFIX",
    "JOURNAL_ENV",
    "REFUSED_COMMANDS",
    "RUNNER_NAMES",
    "TRUSTED_FAB_ENV",
    "FabIdentity",
    "FabRefused",
    "Gate",
    "GuardUnsupported",
    "check_runner",
    "load_installed_client_app",
    "main",
    "refuse_task",
    "run_guarded",
    "trusted_pins",
    "verify_fab",
    "write_task_shims",
]


if __name__ == "__main__":
    # Run the importable module, so errors carry ecrec.federation.guard names, not __main__.
    from ecrec.federation import guard

    sys.exit(guard.main())
