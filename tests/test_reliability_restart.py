"""Issue 12: `longlive serve` killed with SIGKILL (no clean-up at all) and started again on the
same ipc endpoints: a controller that kept its sockets resends, and the new daemon answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from protocol.client import Controller, Viewer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _serve(tmp_path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "serve", "--model", "random-small", "--threads", "1",
                             "--control", f"ipc://{tmp_path}/control", "--stream", f"ipc://{tmp_path}/stream"],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    while line and not line.startswith("longlive: serving"):
        line = proc.stdout.readline()
    assert line.startswith("longlive: serving"), "serve did not start"
    return proc


def test_sigkill_then_restart_on_the_same_endpoints(tmp_path):
    control, stream = f"ipc://{tmp_path}/control", f"ipc://{tmp_path}/stream"
    first = _serve(tmp_path)
    try:
        with Controller(control) as ctl, Viewer(stream, acks=False, status=False) as view:
            assert ctl.send_prompt("a blue cube slides on the snowy field").result(30).status == "applied"
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            during = ctl.send_prompt("a red ball rolls over green grass")  # sent into the void
            assert not during.done()
            second = _serve(tmp_path)
            try:
                ack = during.result(30)  # the resends reach the new daemon
                assert ack.status == "applied" and ack.frame is not None
                shown = next(p for p in view.frames(timeout=20) if p.frame.prompt_id == during.event_id)
                assert ctl.status("main")[0].prompt_id == during.event_id
            finally:
                second.send_signal(signal.SIGTERM)
                out, _ = second.communicate(timeout=60)
        assert second.returncode == 0, out
        assert shown.frame.frame >= ack.frame
    finally:
        if first.poll() is None:
            first.kill()
