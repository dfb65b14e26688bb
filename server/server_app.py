"""The ecrec ServerApp: the same object on Flower's simulation and deployment engines.

Run-config keys (``[tool.flwr.app.config]`` in pyproject.toml, kebab-case): see
:func:`ecrec.federation.server.serve`.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from ecrec.federation.server import serve

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    serve(grid, context)
