"""The ecrec ClientApp for a merchant's SuperNode.

Node-config keys (set by ``ecrec-client`` on the merchant's machine; the
server cannot change them): ``data-path`` (the merchant's impressions parquet),
``budget-epsilon`` (the merchant's own ε budget, enforced here),
``ledger-path`` (default: next to the data), ``ledger-key-file`` (optional
encryption at rest). Model and training settings come from the run's
``ecrec-config``; the node's own budget caps whatever they would spend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import Context

from ecrec.errors import ConfigError, DataError
from ecrec.federation.client import make_client_app

if TYPE_CHECKING:
    from ecrec.node import MerchantNode


def node_from_context(context: Context) -> MerchantNode:
    """Build the merchant's node from its SuperNode's node config.

    Heavy imports (torch, opacus, pandas) happen here, not at module import:
    SecAgg+ handles 3 of its 4 messages per round inside the mod, and each
    message starts a fresh ClientApp process.
    """
    from ecrec.config import loads_config
    from ecrec.data.io import read_impressions
    from ecrec.node import MerchantNode
    from ecrec.privacy.ledger import read_key_file

    node_config = context.node_config
    for key in ("data-path", "budget-epsilon"):
        if key not in node_config:
            raise ConfigError(f"node config: {key} is not set (ecrec-client sets it)")
    data_path = Path(str(node_config["data-path"]))
    frame = read_impressions(data_path)
    merchants = sorted(frame["merchant_id"].astype(str).unique())
    if len(merchants) != 1:
        raise DataError(f"{data_path}: expected one merchant_id, found {len(merchants)}")
    ledger_path = Path(str(node_config.get("ledger-path") or data_path.with_suffix(".ledger.json")))
    key_file = node_config.get("ledger-key-file")
    key = read_key_file(str(key_file)) if key_file else None
    config = loads_config(
        str(context.run_config.get("ecrec-config", "")), source="run config ecrec-config"
    )
    return MerchantNode(
        merchant_id=merchants[0],
        frame=frame,
        config=config,
        ledger_path=ledger_path,
        budget_epsilon=float(node_config["budget-epsilon"]),
        ledger_key=key,
    )


app = make_client_app(node_from_context)
