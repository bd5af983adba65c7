"""``longlive eval toy``: quality harness for the toy model (placeholder, filled in below)."""
from __future__ import annotations
import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate the toy model against the world's ground truth")
    p.add_argument("model", choices=["toy"])
    p.set_defaults(run=lambda args: 0)
