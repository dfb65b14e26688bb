"""TLS certificates and SuperNode keys for a deployment (no Flower import).

Two independent trust mechanisms protect a deployment, and this package makes
the files for both:

* **TLS** (server authenticity, encryption): a private CA signs the server's
  certificate; every merchant gets only ``ca.crt`` and so talks to the real
  server and nobody else.
* **Node authentication** (who may join): each merchant node has an EC key
  pair. The server operator registers the *public* key; the private key never
  leaves the merchant. Flower's SuperNode reads the private key in OpenSSH
  format and ``flwr supernode register`` takes the public key in OpenSSH
  format on a NIST curve, so both are written that way (P-384, as Flower's
  docs use).

Private keys are created with mode 0600 and existing files are never
overwritten unless asked, so a re-run cannot silently replace a CA that
merchants already trust.
"""

from __future__ import annotations

from ecrec.certs.checks import (
    check_ca_cert,
    check_node_private_key,
    check_node_public_key,
    check_private_key_file,
    load_certificate,
    server_cert_hosts,
    verify_server_cert,
)
from ecrec.certs.files import DEFAULT_HOSTS, CertBundle, CertsError
from ecrec.certs.issue import (
    make_ca,
    make_node_key,
    make_server_cert,
    node_key_paths,
    write_certs,
    write_node_key,
)

__all__ = [
    "DEFAULT_HOSTS",
    "CertBundle",
    "CertsError",
    "check_ca_cert",
    "check_node_private_key",
    "check_node_public_key",
    "check_private_key_file",
    "load_certificate",
    "make_ca",
    "make_node_key",
    "make_server_cert",
    "node_key_paths",
    "server_cert_hosts",
    "verify_server_cert",
    "write_certs",
    "write_node_key",
]
