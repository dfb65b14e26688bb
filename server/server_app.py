"""The ecrec ServerApp for Flower's deployment engine (``flwr run``).

Run-config keys (kebab-case, as Flower apps use them):
``ecrec-config`` (the TOML text of the run config, shipped to every node),
``run-dir`` (the run folder on the server), ``validation-path`` (the pooled
validation shard held by the server), ``resume`` (continue the run folder).
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from ecrec.config import loads_config
from ecrec.data.io import read_impressions
from ecrec.errors import ConfigError
from ecrec.federation.server import plan_server_run, run_federation
from ecrec.runfolder import RunFolder

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_config = context.run_config
    for key in ("ecrec-config", "run-dir", "validation-path"):
        if not run_config.get(key):
            raise ConfigError(f"run config: {key} is not set (ecrec-server sets it)")
    config = loads_config(str(run_config["ecrec-config"]), source="run config ecrec-config")
    plan = plan_server_run(
        config,
        run=RunFolder(Path(str(run_config["run-dir"]))),
        validation=read_impressions(Path(str(run_config["validation-path"]))),
        resume=bool(run_config.get("resume", False)),
    )
    run_federation(grid, context, plan=plan)
