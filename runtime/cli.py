"""The ``longlive`` command. Each subcommand lives in the module that owns it and registers
itself with ``add_parser(subparsers)``; this file only says which module owns which command.

Only the module of the command being run is imported, so light commands (``send``,
``watch``) start without loading torch; ``--help`` imports them all to list them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "serve": "runtime.daemon.cli",
    "send": "runtime.daemon.cli",
    "watch": "runtime.daemon.cli",
    "bench-protocol": "runtime.daemon.cli",
    "bench-plugins": "runtime.daemon.bench_plugins",
    "keys": "runtime.daemon.keys",
    "soak": "runtime.daemon.soak",
    "bench": "runtime.bench",
    "demo": "demos.cli",
    "plugins": "plugins.cli",
    "osc": "plugins.cli",
    "train": "toylab.train",
    "eval": "toylab.evaluate",
    "play": "scripting.cli",
    "render": "scripting.cli",
    "check": "scripting.cli",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longlive", description=(
        "Real-time, interactive, endless video generation (LongLive) as a daemon games can drive."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for name in modules:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    args.argv = argv
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
