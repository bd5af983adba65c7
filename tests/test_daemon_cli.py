"""`longlive serve`, `send` and `watch` as a newcomer runs them: separate processes, a signal
to stop. Endpoints are ipc:// in a temporary directory so parallel runs never collide."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
LONGLIVE = [sys.executable, "-m", "runtime.cli"]  # the `longlive` console script
CLIENT = [sys.executable, "-m", "runtime.daemon"]  # same commands without importing torch
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 shared cores: one torch thread per process


def _endpoints(tmp_path: Path) -> list[str]:
    return ["--control", f"ipc://{tmp_path}/control", "--stream", f"ipc://{tmp_path}/stream"]


def _serve(tmp_path: Path, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(LONGLIVE + ["serve", "--model", "random-small", *_endpoints(tmp_path), *extra],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()  # printed once both sockets are bound
    while line and not line.startswith("longlive: serving"):
        line = proc.stdout.readline()
    assert line.startswith("longlive: serving random-small"), "serve did not start"
    return proc


def _stop(proc: subprocess.Popen, sig: int) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_serve_send_watch_then_sigint(tmp_path):
    serve = _serve(tmp_path)
    try:
        sent = subprocess.run(CLIENT + ["send", "a blue cube slides on the snowy field", *_endpoints(tmp_path)],
                              cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert "takes effect at frame" in sent.stdout and "session main" in sent.stdout
        frame = int(sent.stdout.split("at frame ")[1].split()[0])
        watched = subprocess.run(CLIENT + ["watch", "--count", "4", "--save", str(tmp_path / "png"), "--timeout", "30",
                                             *_endpoints(tmp_path)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                                 timeout=60)
        assert watched.returncode == 0, watched.stderr
    finally:
        out = _stop(serve, signal.SIGINT)
    assert "longlive: stopped" in out
    frame_lines = [line for line in watched.stdout.splitlines() if line.startswith("frame  main #")]
    assert len(frame_lines) == 4 and "status main" in watched.stdout  # greeted with the state at once
    saved = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert len(saved) == 4 and all(name.startswith("main_") and name.endswith(".png") for name in saved)
    assert int(saved[0][5:11]) > frame  # watching started after the prompt's frame


def test_send_reports_a_refused_prompt(tmp_path):
    serve = _serve(tmp_path, "--session", "")
    try:
        sent = subprocess.run(CLIENT + ["send", "hello", *_endpoints(tmp_path)], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=60)
    finally:
        _stop(serve, signal.SIGTERM)
    assert sent.returncode == 1 and "UNKNOWN_SESSION" in sent.stderr


def test_serve_refuses_an_open_address_without_curve(tmp_path):
    result = subprocess.run(LONGLIVE + ["serve", "--model", "random-small", "--control", "tcp://0.0.0.0:0"],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "without CURVE" in result.stderr


def test_curve_client_options_come_in_pairs(tmp_path):
    result = subprocess.run(CLIENT + ["send", "x", "--curve-server-key", "k.key", *_endpoints(tmp_path)],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--curve-secret" in result.stderr


def test_serve_explains_a_model_it_cannot_load(tmp_path):
    result = subprocess.run(LONGLIVE + ["serve", "--model", "longlive-1.3b", "--weights", str(tmp_path),
                                        *_endpoints(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "cannot load model 'longlive-1.3b'" in result.stderr and "longlive_base.pt" in result.stderr
