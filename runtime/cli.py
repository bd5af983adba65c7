"""The ``longlive`` command. Each subcommand lives in the module that owns it and registers
itself with ``add_parser(subparsers)``; this file only lists them."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "runtime.bench",
    "runtime.daemon.cli",
    "runtime.toy.train",
    "runtime.toy.evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longlive", description=(
        "Real-time, interactive, endless video generation (LongLive) as a daemon games can drive."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
