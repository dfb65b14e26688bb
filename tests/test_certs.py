"""``ecrec certs``: the files Flower's TLS and node authentication need."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecrec.certs import (
    CertsError,
    check_ca_cert,
    check_node_private_key,
    check_node_public_key,
    verify_server_cert,
    write_certs,
    write_node_key,
)
from ecrec.cli import main as ecrec_main


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_ca_server_and_node_files(tmp_path: Path) -> None:
    bundle = write_certs(tmp_path / "certs", hosts=["fl.example.com", "10.1.2.3"], nodes=2)
    names = sorted(p.name for p in (tmp_path / "certs").iterdir())
    assert names == sorted(
        [
            "ca.crt",
            "ca.key",
            "server.crt",
            "server.key",
            "node-1.key",
            "node-1.pub",
            "node-2.key",
            "node-2.pub",
        ]
    )
    for private in (bundle.ca_key, bundle.server_key, *(k for k, _ in bundle.nodes)):
        assert _mode(private) == 0o600, private
    for public in (bundle.ca_cert, bundle.server_cert, *(p for _, p in bundle.nodes)):
        assert _mode(public) & 0o077 != 0o077  # readable, not world-writable
        assert not _mode(public) & 0o022


def test_server_cert_verifies_against_ca_and_has_sans(tmp_path: Path) -> None:
    bundle = write_certs(tmp_path, hosts=["fl.example.com", "10.1.2.3", "::1"])
    server = verify_server_cert(bundle.server_cert, bundle.ca_cert)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"fl.example.com", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("127.0.0.1"),
    }
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    check_ca_cert(bundle.ca_cert)
    # The standard library's TLS stack accepts the pair (what uvicorn and the nodes use).
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(bundle.server_cert, bundle.server_key)
    client_ctx = ssl.create_default_context(cafile=str(bundle.ca_cert))
    assert client_ctx.cert_store_stats()["x509_ca"] == 1


def test_server_cert_from_another_ca_is_caught(tmp_path: Path) -> None:
    one = write_certs(tmp_path / "one")
    two = write_certs(tmp_path / "two")
    with pytest.raises(CertsError, match="not signed by the CA"):
        verify_server_cert(one.server_cert, two.ca_cert)
    with pytest.raises(CertsError, match="not a CA certificate"):
        check_ca_cert(one.server_cert)


def test_node_keys_are_what_flower_loads(tmp_path: Path) -> None:
    private, public = write_node_key(tmp_path / "merchant-a")
    assert (private.name, public.name) == ("merchant-a.key", "merchant-a.pub")
    assert _mode(private) == 0o600
    # flower-supernode: load_ssh_private_key; flwr supernode register: load_ssh_public_key.
    key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp384r1"
    pub = serialization.load_ssh_public_key(public.read_bytes())
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    assert pub.public_numbers() == key.public_key().public_numbers()
    assert public.read_text().startswith("ecdsa-sha2-nistp384 ")
    check_node_private_key(private)
    assert check_node_public_key(public).endswith("merchant-a")


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    first = write_certs(tmp_path, nodes=1)
    before = first.ca_cert.read_bytes()
    with pytest.raises(CertsError, match=r"ca\.crt: already exists \(use --force"):
        write_certs(tmp_path, nodes=1)
    assert first.ca_cert.read_bytes() == before  # nothing replaced, nothing half-written
    again = write_certs(tmp_path, nodes=1, force=True)
    assert again.ca_cert.read_bytes() != before
    assert _mode(again.ca_key) == 0o600
    with pytest.raises(CertsError, match="already exists"):
        write_node_key(tmp_path / "node-1")


def test_a_node_file_in_the_way_stops_everything_before_writing(tmp_path: Path) -> None:
    (tmp_path / "node-2.pub").write_text("something else")
    with pytest.raises(CertsError, match=r"node-2\.pub: already exists"):
        write_certs(tmp_path, nodes=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-2.pub"]


def test_bad_inputs_get_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(CertsError, match="neither an IP address nor a DNS name"):
        write_certs(tmp_path, hosts=["bad host"])
    with pytest.raises(CertsError, match="--nodes must be >= 0"):
        write_certs(tmp_path, nodes=-1)
    (tmp_path / "junk.key").write_text("not a key")
    with pytest.raises(CertsError, match="not an unencrypted OpenSSH private key"):
        check_node_private_key(tmp_path / "junk.key")
    with pytest.raises(CertsError, match="not found"):
        check_node_public_key(tmp_path / "missing.pub")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert ecrec_main(["certs", "--out", str(out), "--nodes", "1", "--host", "fl.example"]) == 0
    printed = capsys.readouterr().out
    assert "fl.example, 127.0.0.1, localhost" in printed
    assert (out / "node-1.key").exists()
    assert ecrec_main(["certs", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists (use --force" in err
    assert ecrec_main(["certs", "--out", str(out), "--force"]) == 0
    capsys.readouterr()
    assert ecrec_main(["certs", "node-key", "--out", str(tmp_path / "m1")]) == 0
    assert "m1.pub" in capsys.readouterr().out
    assert ecrec_main(["certs", "node-key", "--out", str(tmp_path / "m1")]) == 2
    assert ecrec_main(["certs"]) == 2
    assert "--out DIR is required" in capsys.readouterr().err
