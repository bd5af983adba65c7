"""`longlive serve` as a child process with one plugin, for tests of the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def serve_with_plugin(tmp_path: Path, plugin: str, config: str) -> subprocess.Popen:
    """random-small on ipc endpoints in ``tmp_path``, ``--plugin plugin`` configured by the TOML
    text ``config``; stdout and stderr merged into ``proc.stdout`` (text)."""
    (tmp_path / "plugins.toml").write_text(config)
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "serve", "--model", "random-small", "--threads", "1",
         "--plugin", plugin, "--plugin-config", str(tmp_path / "plugins.toml"),
         "--control", f"ipc://{tmp_path}/control", "--stream", f"ipc://{tmp_path}/stream"],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
