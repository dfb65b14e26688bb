"""What ecrec-client and the node guard agree on: the guard's console prefix, the
environment variables ecrec-client sets for it, and Flower's task command names."""

from __future__ import annotations

#: Every line the guard prints starts with this (``ecrec-client`` shows these lines).
GUARD_PREFIX = "ecrec-node-guard"
#: The node journal the guard records refusals in (set by ``ecrec-client``).
JOURNAL_ENV = "ECREC_NODE_JOURNAL"
#: Comma-separated FAB SHA-256 pins (``ecrec-client --trusted-fab-sha256``); empty: no pins.
TRUSTED_FAB_ENV = "ECREC_TRUSTED_FAB_SHA256"
#: The command Flower's SuperExec starts for a ClientApp task, which the guard replaces.
GUARDED_COMMAND = "flwr-clientapp"
#: The other task commands of Flower 1.42's SuperExec (``TASK_TYPE_TO_COMMAND``); a
#: merchant node runs none of them (a test keeps this list equal to Flower's).
REFUSED_COMMANDS = (
    "flwr-agentapp",
    "flwr-connector",
    "flwr-model",
    "flwr-serverapp",
    "flwr-simulation",
)
