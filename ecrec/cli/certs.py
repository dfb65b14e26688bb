"""``ecrec certs``: TLS files for the server and SuperNode keys for merchants."""

from __future__ import annotations

import argparse
from pathlib import Path

from ecrec.errors import EcrecError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "certs",
        help="make TLS certificates and node keys for a deployment",
        description="Make a private CA, a server certificate signed by it and (optionally) "
        "node key pairs. Give merchants ca.crt (and, if you made it, their node key); keep "
        "ca.key and server.key on the server.",
        epilog="`ecrec certs node-key --out PREFIX` makes one node key pair on a merchant's "
        "machine: PREFIX.key stays there, PREFIX.pub goes to the server operator.",
    )
    parser.add_argument("--out", type=Path, help="folder for ca.crt, ca.key, server.crt, ...")
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="HOST",
        help="a name or IP address merchants use to reach the server (repeatable); "
        "127.0.0.1 and localhost are always included",
    )
    parser.add_argument("--nodes", type=int, default=0, help="also make N node key pairs")
    parser.add_argument("--days", type=int, default=825, help="server certificate validity")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    parser.set_defaults(handler=run_certs)
    actions = parser.add_subparsers(dest="certs_command", metavar="ACTION")
    node = actions.add_parser(
        "node-key",
        help="make one node key pair (PREFIX.key private, PREFIX.pub for the operator)",
        description="Make a SuperNode key pair (EC P-384, OpenSSH format, as Flower expects).",
    )
    node.add_argument(
        "--out", type=Path, required=True, metavar="PREFIX", help="writes PREFIX.key, PREFIX.pub"
    )
    node.add_argument("--force", action="store_true", help="replace existing files")
    node.set_defaults(handler=run_node_key)


def run_certs(args: argparse.Namespace) -> int:
    from ecrec.certs import DEFAULT_HOSTS, write_certs

    if args.out is None:
        raise EcrecError("--out DIR is required (or use `ecrec certs node-key --out PREFIX`)")
    bundle = write_certs(
        args.out,
        hosts=list(args.host) or list(DEFAULT_HOSTS),
        nodes=args.nodes,
        days=args.days,
        force=args.force,
    )
    print(f"wrote {args.out}/ (server certificate valid for {', '.join(bundle.hosts)}):")
    print(f"  {bundle.ca_cert.name}  CA certificate: give it to every merchant (--ca)")
    print(f"  {bundle.ca_key.name}  CA private key (0600): keep it offline; it signs server certs")
    print(f"  {bundle.server_cert.name}, {bundle.server_key.name}  the server's TLS identity")
    for private, public in bundle.nodes:
        print(
            f"  {private.name}, {public.name}  a node key pair: .key to one merchant, .pub in "
            "server.node-keys"
        )
    return 0


def run_node_key(args: argparse.Namespace) -> int:
    from ecrec.certs import write_node_key

    private, public = write_node_key(args.out, force=args.force)
    print(f"wrote {private} (private, 0600: stays on this machine, ecrec-client --key)")
    print(f"wrote {public} (send it to the server operator for server.node-keys)")
    return 0
