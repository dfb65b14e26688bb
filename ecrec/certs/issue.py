"""Making the files: a private CA, the server's TLS certificate, SuperNode key pairs,
written 0600 where private and never over an existing file unless forced."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ecrec.certs.files import (
    CA_CERT,
    CA_DAYS,
    CA_KEY,
    DEFAULT_HOSTS,
    NODE_PRIVATE_SUFFIX,
    NODE_PUBLIC_SUFFIX,
    SERVER_CERT,
    SERVER_KEY,
    CertBundle,
    CertsError,
)


def _write_file(path: Path, data: bytes, *, private: bool, force: bool) -> None:
    """Write ``data``; private files are created 0600 from the start (no umask window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if force and path.exists():
        path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600 if private else 0o644)
    except FileExistsError:
        raise CertsError(f"{path}: already exists (use --force to replace it)") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if private:
        os.chmod(path, 0o600)  # O_CREAT's mode is masked by umask; be explicit


def _refuse_existing(paths: Iterable[Path], force: bool) -> None:
    """Check every target before writing any, so a refusal leaves nothing half-made."""
    if force:
        return
    for path in paths:
        if path.exists():
            raise CertsError(f"{path}: already exists (use --force to replace it)")


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ecrec"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> dt.datetime:
    # Back-date a little so a node whose clock lags slightly still accepts the cert.
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Digital signatures only, plus certificate and CRL signing for the CA."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(*, days: int = CA_DAYS) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign server certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = _name("ecrec federation CA")
    start = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _san_entries(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """IP literals become IP SANs, everything else a DNS SAN (TLS checks the right kind)."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        host = host.strip().strip("[]")
        if not host:
            raise CertsError("--host: empty host name")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if any(c in host for c in " /:@"):
                raise CertsError(
                    f"--host: {host!r} is neither an IP address nor a DNS name"
                ) from None
            names.append(x509.DNSName(host))
    return names


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    days: int = 825,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A TLS server certificate for ``hosts``, signed by the CA."""
    if not hosts:
        raise CertsError("the server certificate needs at least one --host")
    key = ec.generate_private_key(ec.SECP384R1())
    start = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_san_entries(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def make_node_key(comment: str = "") -> tuple[bytes, bytes]:
    """One SuperNode key pair: (OpenSSH private key, OpenSSH public key line)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    if comment:
        public += b" " + comment.encode("ascii", "replace")
    return private, public + b"\n"


def node_key_paths(prefix: Path) -> tuple[Path, Path]:
    """``PREFIX.key`` (private, stays with the merchant) and ``PREFIX.pub`` (to the operator)."""
    return (
        prefix.with_name(prefix.name + NODE_PRIVATE_SUFFIX),
        prefix.with_name(prefix.name + NODE_PUBLIC_SUFFIX),
    )


def write_node_key(prefix: Path, *, force: bool = False) -> tuple[Path, Path]:
    """Create one node key pair at ``PREFIX.key`` / ``PREFIX.pub``."""
    private_path, public_path = node_key_paths(prefix)
    _refuse_existing((private_path, public_path), force)
    private, public = make_node_key(comment=prefix.name)
    _write_file(private_path, private, private=True, force=force)
    _write_file(public_path, public, private=False, force=force)
    return private_path, public_path


def write_certs(
    out: Path,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    nodes: int = 0,
    days: int = 825,
    force: bool = False,
) -> CertBundle:
    """CA, server certificate for ``hosts`` and ``nodes`` node key pairs under ``out``."""
    if nodes < 0:
        raise CertsError(f"--nodes must be >= 0, got {nodes}")
    if days < 1:
        raise CertsError(f"--days must be >= 1, got {days}")
    # Loopback is always included: ecrec-server's own tools reach the SuperLink that way.
    hosts = tuple(dict.fromkeys([*(h.strip() for h in hosts), *DEFAULT_HOSTS]))
    _san_entries(hosts)  # refuse a bad host before anything is written
    bundle = CertBundle(
        ca_cert=out / CA_CERT,
        ca_key=out / CA_KEY,
        server_cert=out / SERVER_CERT,
        server_key=out / SERVER_KEY,
        hosts=hosts,
        nodes=[node_key_paths(out / f"node-{i}") for i in range(1, nodes + 1)],
    )
    targets = [bundle.ca_cert, bundle.ca_key, bundle.server_cert, bundle.server_key]
    _refuse_existing([*targets, *(p for pair in bundle.nodes for p in pair)], force)
    ca_key, ca_cert = make_ca(days=max(days, CA_DAYS))
    server_key, server_cert = make_server_cert(ca_key, ca_cert, hosts=hosts, days=days)
    _write_file(bundle.ca_key, _pem_private(ca_key), private=True, force=force)
    _write_file(
        bundle.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False, force=force
    )
    _write_file(bundle.server_key, _pem_private(server_key), private=True, force=force)
    _write_file(
        bundle.server_cert,
        server_cert.public_bytes(serialization.Encoding.PEM),
        private=False,
        force=force,
    )
    for i in range(1, nodes + 1):
        write_node_key(out / f"node-{i}", force=force)
    return bundle
