"""`longlive plugins`: which plugins a `longlive serve` with the same flags would load, the
hooks each implements, the models they register, and why any failed."""

from __future__ import annotations

import argparse
import logging
import sys

from plugins.host import OBSERVER_HOOKS, PluginError, PluginHost, read_config


class _ModelNames:
    """Stands in for the model registry: collects names without building anything."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add(self, name: str, builder: object) -> None:
        self.names.append(name)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("plugins", help="list the plugins `serve` would load, their hooks and models")
    cmd.add_argument("--plugin", action="append", default=[], metavar="NAME|MODULE|FILE.py")
    cmd.add_argument("--plugin-config", metavar="FILE.toml")
    cmd.add_argument("--no-entry-points", action="store_true")
    cmd.set_defaults(run=cmd_plugins)


def cmd_plugins(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.CRITICAL)  # failures are listed below, once, without tracebacks
    try:
        host = PluginHost(read_config(args.plugin_config))
    except PluginError as exc:
        print(f"longlive plugins: {exc}", file=sys.stderr)
        return 2
    if not args.no_entry_points:
        host.load_entry_points()
    try:
        host.enable_from_config()
    except PluginError as exc:
        print(f"longlive plugins: {exc}", file=sys.stderr)
        return 2
    for spec in args.plugin:
        host.load(spec)
    models = _ModelNames()
    host.register_models(models)
    for name in host.names:
        hooks = sorted(h.name.removeprefix("longlive_") for h in host.pm.get_hookcallers(host.pm.get_plugin(name)))
        kinds = ["observer" if h in OBSERVER_HOOKS else "decision" for h in hooks]
        print(f"{name}: " + ", ".join(f"{h} ({k})" for h, k in zip(hooks, kinds)))
    for name, why in host.disabled.items():
        print(f"{name}: DISABLED, {why}")
    print(f"models: {', '.join(sorted(models.names))}")
    host.close()
    return 1 if host.disabled else 0
