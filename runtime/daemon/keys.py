"""`longlive keys DIR NAME`: write a CURVE key pair in the ZeroMQ certificate format
(`NAME.key` public, `NAME.key_secret` secret), for the daemon or for a client whose public
key goes into the daemon's `--curve-clients` directory."""

from __future__ import annotations

import argparse
from pathlib import Path

import zmq.auth


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="write a CURVE key pair (NAME.key, NAME.key_secret)")
    keys.add_argument("directory", type=Path)
    keys.add_argument("name")
    keys.set_defaults(run=cmd_keys)


def cmd_keys(args: argparse.Namespace) -> int:
    args.directory.mkdir(parents=True, exist_ok=True)
    for suffix in (".key", ".key_secret"):
        if (args.directory / f"{args.name}{suffix}").exists():
            print(f"longlive keys: {args.directory / (args.name + suffix)} exists; not overwriting")
            return 2
    public, secret = zmq.auth.create_certificates(args.directory, args.name)
    Path(secret).chmod(0o600)
    print(f"longlive keys: wrote {public} and {secret}")
    return 0
