"""The ecrec ClientApp: a merchant's node, on Flower's simulation and deployment engines.

Node-config keys (set by ``ecrec-client`` on the merchant's machine; the server
cannot change them): see :mod:`ecrec.node.settings`. The server's request for each
round arrives with the round; the node's own policy decides whether to train.
"""

from __future__ import annotations

from ecrec.federation.client import make_client_app

app = make_client_app()
