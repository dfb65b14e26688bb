"""``server.toml``: the platform operator's settings for ``ecrec-server``.

Relative paths are relative to the file; unknown keys and wrong types are refused
with the file and key named. ``app-dir`` is the ecrec Flower app ecrec-server submits:
by default the project folder this ecrec was installed from.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from ecrec.deploy.flower import TlsFiles
from ecrec.deploy.net import Address, parse_address
from ecrec.errors import ConfigError, toml_problem

DEFAULT_PORT = 9092


def installed_app_dir(*, where: str = "server.app-dir") -> Path:
    """The ecrec project folder -- the Flower app, whose pyproject.toml declares
    ``[tool.flwr.app]`` -- that this ecrec runs from (an editable install or a
    checkout), else the folder pip recorded installing it from."""
    import ecrec

    candidates = [Path(ecrec.__file__).resolve().parent.parent]
    for dist in metadata.distributions(name="ecrec"):
        try:
            direct = json.loads(dist.read_text("direct_url.json") or "{}")
        except json.JSONDecodeError:
            continue
        url = urlparse(str(direct.get("url", "")))
        if url.scheme == "file":
            candidates.append(Path(unquote(url.path)))
    for folder in candidates:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.flwr.app]" in pyproject.read_text("utf-8"):
            return folder
    raise ConfigError(
        f"{where}: not set, and ecrec was not installed from its project folder; set it to "
        "the ecrec checkout (the folder with pyproject.toml) ecrec-server submits as the app"
    )


@dataclass(frozen=True)
class ServerSettings:
    """The ``[server]`` table of ``server.toml``; relative paths are relative to that file."""

    listen: Address
    connect: Address
    insecure: bool
    tls: TlsFiles | None
    node_keys: tuple[Path, ...]
    database: Path
    log_dir: Path
    run_dir: Path
    validation_path: Path
    ecrec_config: Path | None
    app_dir: Path
    rounds: int
    wait_for_nodes_timeout: float
    run_timeout: float
    startup_timeout: float
    source: Path = field(default=Path("server.toml"))


_KEYS: dict[str, type | tuple[type, ...]] = {
    "address": str,
    "connect-address": str,
    "insecure": bool,
    "ca-cert": str,
    "server-cert": str,
    "server-key": str,
    "node-keys": list,
    "database": str,
    "log-dir": str,
    "run-dir": str,
    "validation-path": str,
    "ecrec-config": str,
    "app-dir": str,
    "rounds": int,
    "wait-for-nodes-timeout": (int, float),
    "run-timeout": (int, float),
    "startup-timeout": (int, float),
}
_REQUIRED = ("run-dir", "validation-path")


def load_settings(path: Path) -> ServerSettings:
    """Parse and type-check ``server.toml`` (unknown keys are refused, not ignored)."""
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: server config not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read server config: {err}") from None
    except (ValueError, RecursionError) as err:  # TOMLDecodeError, or an absurd number/nesting
        raise ConfigError(f"{path}: invalid TOML: {toml_problem(err)}") from None
    extra = sorted(set(document) - {"server"})
    if extra:
        raise ConfigError(f"{path}: unknown table [{extra[0]}] (only [server] is read)")
    table = document.get("server")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: missing [server] table")
    for key, value in table.items():
        if key not in _KEYS:
            raise ConfigError(
                f"{path}: server.{key}: unknown key (known: {', '.join(sorted(_KEYS))})"
            )
        expected = _KEYS[key]
        if isinstance(value, bool) and expected is not bool:
            raise ConfigError(f"{path}: server.{key}: expected a {_kind(expected)}, got {value!r}")
        if not isinstance(value, expected):
            raise ConfigError(f"{path}: server.{key}: expected a {_kind(expected)}, got {value!r}")
        _check_value(value, where=f"{path}: server.{key}")
    for key in _REQUIRED:
        if not table.get(key):
            raise ConfigError(f"{path}: server.{key} is required")
    base = path.resolve().parent

    def p(key: str, default: str = "") -> Path | None:
        text = str(table.get(key, default)).strip()
        return (base / Path(text).expanduser()).resolve() if text else None

    where = f"{path}: server"
    listen = parse_address(
        str(table.get("address", f"0.0.0.0:{DEFAULT_PORT}")), what=f"{where}.address"
    )
    connect = (
        parse_address(str(table["connect-address"]), what=f"{where}.connect-address")
        if table.get("connect-address")
        else listen.local()
    )
    insecure = bool(table.get("insecure", False))
    tls = None
    if not insecure:
        missing = [k for k in ("ca-cert", "server-cert", "server-key") if not table.get(k)]
        if missing:
            raise ConfigError(
                f"{where}.{missing[0]} is required (TLS is on unless insecure = true); "
                "make the files with `ecrec certs --out DIR --host YOUR.SERVER.NAME`"
            )
        tls = TlsFiles(p("ca-cert"), p("server-cert"), p("server-key"))  # type: ignore[arg-type]
    keys = table.get("node-keys", [])
    if not all(isinstance(k, str) and k for k in keys):
        raise ConfigError(f"{where}.node-keys: expected a list of paths to .pub files")
    numbers = {
        k: float(table.get(k, d))
        for k, d in (
            ("wait-for-nodes-timeout", 600.0),
            ("run-timeout", 0.0),
            ("startup-timeout", 120.0),
        )
    }
    for key, value in numbers.items():
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}.{key}: must be >= 0, got {value}")
    rounds = int(table.get("rounds", 0))
    if rounds < 0:
        raise ConfigError(
            f"{where}.rounds: must be >= 0 (0 = as in the ecrec config), got {rounds}"
        )
    database = p("database", "state/superlink.db")
    assert database is not None
    return ServerSettings(
        listen=listen,
        connect=connect,
        insecure=insecure,
        tls=tls,
        node_keys=tuple(base / Path(k).expanduser() for k in keys),
        database=database,
        log_dir=p("log-dir") or database.parent / "logs",
        run_dir=p("run-dir"),  # type: ignore[arg-type]
        validation_path=p("validation-path"),  # type: ignore[arg-type]
        ecrec_config=p("ecrec-config"),
        app_dir=p("app-dir") or installed_app_dir(where=f"{where}.app-dir"),
        rounds=rounds,
        wait_for_nodes_timeout=numbers["wait-for-nodes-timeout"],
        run_timeout=numbers["run-timeout"],
        startup_timeout=numbers["startup-timeout"] or 120.0,
        source=path,
    )


def _check_value(value: object, *, where: str) -> None:
    """No NUL or control character in a string (a path with one is a traceback later),
    no number too large for a float, no string of absurd length."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            if len(item) > 4096:
                raise ConfigError(f"{where}: longer than 4096 characters")
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in item):
                raise ConfigError(f"{where}: control character in {item[:60]!r}")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > 2**53:
            raise ConfigError(f"{where}: number too large")


def _kind(expected: type | tuple[type, ...]) -> str:
    names = {str: "string", bool: "boolean", int: "integer", float: "number", list: "list"}
    if isinstance(expected, tuple):
        return "number"
    return names.get(expected, expected.__name__)
