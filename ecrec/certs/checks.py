"""Checking the files before anything starts: each is read as the tool that uses it will
read it, and a problem is one line naming the file."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecrec.certs.files import NIST_CURVES, CertsError


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertsError(f"{path}: {what} not found") from None
    except OSError as err:
        raise CertsError(f"{path}: cannot read {what}: {err.strerror or err}") from None


def load_certificate(path: Path, what: str = "certificate") -> x509.Certificate:
    """A PEM certificate, or a one-line error naming the file."""
    try:
        return x509.load_pem_x509_certificate(_read(path, what))
    except ValueError:
        raise CertsError(f"{path}: not a PEM {what}") from None


def check_ca_cert(path: Path) -> x509.Certificate:
    """The CA certificate a node trusts (a CA, so a server cert given by mistake is caught)."""
    cert = load_certificate(path, "CA certificate")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CertsError(f"{path}: not a CA certificate (give the CA's ca.crt, not server.crt)")
    return cert


def check_private_key_file(path: Path, what: str) -> None:
    """A PEM private key that exists and is readable (TLS server key)."""
    try:
        serialization.load_pem_private_key(_read(path, what), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CertsError(f"{path}: not an unencrypted PEM {what}") from None


def check_node_private_key(path: Path) -> None:
    """The node's OpenSSH EC private key, as ``flower-supernode`` will load it."""
    try:
        key = serialization.load_ssh_private_key(_read(path, "node private key"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CertsError(
            f"{path}: not an unencrypted OpenSSH private key (make one with "
            "`ecrec certs node-key --out PREFIX`)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertsError(f"{path}: node keys must be EC (NIST P-256/384/521), not {key_kind(key)}")


def check_node_public_key(path: Path) -> str:
    """The node's OpenSSH EC public key, as ``flwr supernode register`` will load it."""
    data = _read(path, "node public key")
    try:
        key = serialization.load_ssh_public_key(data.strip())
    except (ValueError, UnsupportedAlgorithm):
        raise CertsError(f"{path}: not an OpenSSH public key line") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in NIST_CURVES:
        raise CertsError(f"{path}: node keys must be EC on a NIST curve (P-256/384/521)")
    return data.decode("ascii", "replace").strip()


def key_kind(key: object) -> str:
    return type(key).__name__.removeprefix("_").replace("PrivateKey", "")


def verify_server_cert(server_cert: Path, ca_cert: Path) -> x509.Certificate:
    """Check that the CA signed the server certificate (catches mixed-up bundles)."""
    server = load_certificate(server_cert, "server certificate")
    ca = check_ca_cert(ca_cert)
    public = ca.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise CertsError(f"{ca_cert}: expected an EC CA key")
    hash_algorithm = server.signature_hash_algorithm
    if hash_algorithm is None:
        raise CertsError(f"{server_cert}: unsupported signature algorithm")
    try:
        public.verify(server.signature, server.tbs_certificate_bytes, ec.ECDSA(hash_algorithm))
    except InvalidSignature:
        raise CertsError(f"{server_cert}: was not signed by the CA in {ca_cert}") from None
    return server


def server_cert_hosts(cert: x509.Certificate) -> list[str]:
    """The host names and IP addresses a server certificate is valid for."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]
