"""Running ecrec on several machines: Flower's deployment engine, supervised.

``processes`` (start children, stop every descendant on exit or signal) and
``net`` (addresses, TLS pre-flight) use only the standard library; ``flower``
drives Flower's command-line tools as subprocesses, so nothing here imports
``flwr``. ``server`` and ``client`` hold the logic behind the thin
``ecrec-server`` and ``ecrec-client`` launchers.
"""

from __future__ import annotations

from ecrec.deploy.processes import Interrupted, Supervisor

__all__ = ["Interrupted", "Supervisor"]
