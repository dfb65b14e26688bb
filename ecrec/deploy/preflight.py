"""Everything ``ecrec-server`` checks before any process starts.

Certificates chain to the CA and name the addresses in use, node keys are EC/NIST,
the validation shard passes the data contract, the run folder is fresh or
resumable, the app folder is the ecrec Flower app, the port is free.
"""

from __future__ import annotations

import tomllib

from ecrec.certs import (
    check_node_public_key,
    check_private_key_file,
    server_cert_hosts,
    verify_server_cert,
)
from ecrec.config import RunConfig
from ecrec.deploy.processes import port_in_use
from ecrec.deploy.settings import ServerSettings
from ecrec.errors import ConfigError
from ecrec.runfolder import RunFolder


def resolve_run_config(settings: ServerSettings) -> RunConfig:
    """The ecrec run config the ServerApp will resolve from the run config it is given."""
    from ecrec.config import config_from_run_config

    return config_from_run_config(run_config_values(settings, resume=False))


def run_config_values(settings: ServerSettings, *, resume: bool) -> dict[str, str | int | bool]:
    """The Flower run-config overrides ecrec-server submits the app with."""
    values: dict[str, str | int | bool] = {
        "config-file": str(settings.ecrec_config or ""),
        "run-dir": str(settings.run_dir),
        "validation-path": str(settings.validation_path),
        "resume": resume,
    }
    if settings.rounds:
        values["num-server-rounds"] = settings.rounds
    return values


def check_before_start(settings: ServerSettings, config: RunConfig, *, resume: bool) -> int:
    """Everything checkable without Flower; returns the first round this launch will run."""
    from ecrec.data.io import read_impressions

    if settings.tls is not None:
        cert = verify_server_cert(settings.tls.server_cert, settings.tls.ca_cert)
        check_private_key_file(settings.tls.server_key, "server private key")
        hosts = server_cert_hosts(cert)
        local = settings.connect.host
        if local not in hosts:
            raise ConfigError(
                f"{settings.tls.server_cert}: valid for {', '.join(hosts)} but ecrec-server "
                f"connects to {local}; reissue it with `ecrec certs --host ...` "
                "(127.0.0.1 is always included) or set server.connect-address"
            )
        if not settings.listen.is_wildcard and settings.listen.host not in hosts:
            raise ConfigError(
                f"{settings.tls.server_cert}: not valid for {settings.listen.host}; "
                "merchants would refuse the server"
            )
    elif settings.node_keys:
        raise ConfigError(
            f"{settings.source}: server.node-keys needs TLS (Flower cannot authenticate "
            "nodes over plain HTTP); remove insecure = true"
        )
    for key in settings.node_keys:
        check_node_public_key(key)
    if len(set(settings.node_keys)) != len(settings.node_keys):
        raise ConfigError(f"{settings.source}: server.node-keys lists a file twice")
    if settings.tls is not None and len(settings.node_keys) < config.federation.min_clients:
        raise ConfigError(
            f"{settings.source}: federation.min-clients is {config.federation.min_clients} "
            f"but server.node-keys registers only {len(settings.node_keys)} node(s)"
        )
    read_impressions(settings.validation_path)
    check_app_dir(settings)

    run = RunFolder(settings.run_dir)
    start_round = 1
    if resume:
        latest = run.read_server_state()
        if latest is None:
            raise ConfigError(
                f"{settings.run_dir}: nothing to resume (no checkpoints/server_state.json)"
            )
        done = int(latest.get("round", 0))
        if done >= config.federation.rounds:
            raise ConfigError(
                f"{settings.run_dir}: all {config.federation.rounds} rounds already done; "
                "raise server.rounds to continue"
            )
        start_round = done + 1
    elif run.metrics_path.exists():
        raise ConfigError(
            f"{settings.run_dir}: already holds a run; use --resume to continue it "
            "or set server.run-dir to a new folder"
        )
    if port_in_use(settings.listen.host or "0.0.0.0", settings.listen.port):
        raise ConfigError(
            f"{settings.source}: server.address {settings.listen}: the port is already in use"
        )
    return start_round


def check_app_dir(settings: ServerSettings) -> None:
    """The app folder must be the ecrec Flower app (its components are what nodes run)."""
    from ecrec.federation.client import CLIENT_COMPONENT
    from ecrec.federation.server import SERVER_COMPONENT

    pyproject = settings.app_dir / "pyproject.toml"
    try:
        app = tomllib.loads(pyproject.read_text("utf-8"))["tool"]["flwr"]["app"]
        components = app["components"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{pyproject}: not a Flower app ({err})") from None
    expected = {"serverapp": SERVER_COMPONENT, "clientapp": CLIENT_COMPONENT}
    if dict(components) != expected:
        raise ConfigError(
            f"{pyproject}: [tool.flwr.app.components] are {dict(components)}, not the ecrec "
            f"apps {expected}; merchant nodes would refuse it"
        )
