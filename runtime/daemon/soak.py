"""`longlive soak`: many controllers at a steady event rate against one daemon, and what
became of every event.

Each controller is what SPEC.md describes: its own DEALER connection to the control socket
(so its own rate budget), on which its answers come back; it resends an event until it is accepted after 1 s, then twice as long each time
up to 2 s (the Python client's backoff), then every 2 s until its final answer (SPEC section 6). Events are prompts (half), seeds and game events (a quarter
each) spread over a few sessions. The figures: events sent, accepted, applied, superseded,
errored (by code), lost (no final answer by the end), events with two different final
answers (must be none), send -> first answer latency, frames produced against the paced
schedule, frames late, and the daemon's resident memory.

`run_load` drives a daemon that is already running (the test suite uses one on a thread);
`longlive soak` starts `longlive serve` in a child process so its memory is its own.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import zmq

from protocol import constants as C
from protocol.client import Controller
from protocol.codec import decode_stream, encode
from protocol.messages import Ack, ControlMessage, Error, GameEvent, Prompt, Seed, StatusRequest

TEXTS = ("a red ball rolls over green grass", "a blue cube slides on the snowy field", "a green tree in the wind",
         "a yellow sun over the sea", "a pink orb rests on the sand", "a white boat on a lake")


@dataclass
class LoadPlan:
    controllers: int = 100
    rate: float = 50.0  # events per second per controller
    seconds: float = 60.0
    sessions: int = 4
    fps: float | None = None  # sessions' playback rate (None: the model's)
    grace_s: float = 15.0  # after the last new event: keep resending until every event is answered
    seed: int = 0


@dataclass
class _Event:
    msg: ControlMessage
    sent: float
    answered: float | None = None  # first answer of any kind (accepted, final, error)
    finals: set[str] = field(default_factory=set)  # ids of distinct final messages
    outcome: str | None = None  # applied, superseded, or an error name
    accepted: bool = False
    sends: int = 1

    def resend_wait(self) -> float:
        """The Controller's rule (SPEC section 6): doubling from RESEND_S while unaccepted, then ACCEPTED_RESEND_S."""
        return C.ACCEPTED_RESEND_S if self.accepted else min(C.RESEND_S * 2 ** (self.sends - 1), C.ACCEPTED_RESEND_S)


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)  # noqa: E731
    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": round(ordered[-1] * 1000, 1)}


class _Client:
    """One controller: a DEALER (events out, their answers back) and its events by id."""

    def __init__(self, context: zmq.Context, control: str, name: str) -> None:
        self.name, self.serial = name, 0
        self.sock = context.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(control)
        self.events: dict[str, _Event] = {}

    def send(self, msg: ControlMessage) -> None:
        try:
            self.sock.send_multipart(encode(msg), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the connection's queue is full: the resend timer tries again

    def new_id(self) -> str:
        self.serial += 1
        return f"{self.name}-{self.serial}"

    def close(self) -> None:
        self.sock.close()


def _connect(clients: list[_Client], timeout: float = 30.0) -> None:
    """Send a status request on every client until each has its answer: all are connected."""
    waiting = {c.name: c for c in clients}
    deadline = time.monotonic() + timeout
    while waiting:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(waiting)} controllers never got an answer from the daemon")
        for c in waiting.values():
            c.send(StatusRequest(id=f"{c.name}-hello", client=c.name))
        time.sleep(0.1)
        for name, c in list(waiting.items()):
            while c.sock.poll(0):
                msg = decode_stream(c.sock.recv_multipart())
                if getattr(msg, "event_id", None) == f"{c.name}-hello":
                    del waiting[name]
                    break


def _make_event(client: _Client, sessions: list[str], rng: random.Random) -> ControlMessage:
    session, kind, event_id = rng.choice(sessions), rng.random(), client.new_id()
    if kind < 0.5:
        return Prompt(id=event_id, client=client.name, session=session, text=rng.choice(TEXTS))
    if kind < 0.75:
        return Seed(id=event_id, client=client.name, session=session, seed=rng.randrange(1000))
    return GameEvent(id=event_id, client=client.name, session=session, name="tick", payload={"n": client.serial})


def _read(client: _Client, now: float) -> None:
    while True:
        try:
            msg = decode_stream(client.sock.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            return
        event = client.events.get(getattr(msg, "event_id", None) or "")
        if event is None or not isinstance(msg, (Ack, Error)):
            continue  # a status reply, or the answer to an earlier `hello`
        if event.answered is None:
            event.answered = now
        if isinstance(msg, Error):
            event.finals.add(msg.id)
            event.outcome = event.outcome or msg.name
        elif msg.final:
            event.finals.add(msg.id)
            event.outcome, event.accepted = event.outcome or msg.status, True
        else:
            event.accepted = True


def run_load(control: str, plan: LoadPlan, memory: Callable[[], float] | None = None,
             log: Callable[[str], None] = lambda line: None) -> dict:
    """Drive the daemon at `control` with `plan`; returns the figures as a dict.
    `memory` returns the daemon's resident memory in MiB (sampled once a second)."""
    rng = random.Random(plan.seed)
    sessions = [f"soak{i}" for i in range(plan.sessions)]
    context = zmq.Context()
    admin = Controller(control, context=context, name="soak-admin")
    clients = [_Client(context, control, f"c{i}") for i in range(plan.controllers)]
    try:
        for name in sessions:
            admin.open(name, seed=0, fps=plan.fps).result(60)
        _connect(clients)
        before = {s.session: s for s in admin.status()}
        rss = [memory()] if memory else []
        poller = zmq.Poller()
        for c in clients:
            poller.register(c.sock, zmq.POLLIN)
        by_sock = {c.sock: c for c in clients}
        start = time.monotonic()
        stop_sending = start + plan.seconds
        next_send = [(start + rng.random() / plan.rate, i) for i in range(len(clients))]
        heapq.heapify(next_send)
        resends: list[tuple[float, str, int]] = []
        sent = resent = 0
        next_sample = start + 1.0
        while True:
            now = time.monotonic()
            while next_send and next_send[0][0] <= now and now < stop_sending:
                due, i = heapq.heappop(next_send)
                client = clients[i]
                msg = _make_event(client, sessions, rng)
                client.events[msg.id] = _Event(msg, now)
                client.send(msg)
                sent += 1
                heapq.heappush(resends, (now + C.RESEND_S, msg.id, i))
                heapq.heappush(next_send, (due + 1.0 / plan.rate, i))
            while resends and resends[0][0] <= now:
                _, event_id, i = heapq.heappop(resends)
                event = clients[i].events[event_id]
                if event.finals:
                    continue
                clients[i].send(event.msg)
                resent += 1
                event.sends += 1
                heapq.heappush(resends, (now + event.resend_wait(), event_id, i))
            if memory and now >= next_sample:
                rss.append(memory())
                next_sample = now + 1.0
            if now >= stop_sending and (not resends or now >= stop_sending + plan.grace_s):
                break
            wait = min([t for t, _ in next_send[:1] if now < stop_sending] + [t for t, _, _ in resends[:1]]
                       + [now + 0.05]) - now
            for sock, _ in poller.poll(max(0.0, wait) * 1000):  # every ready socket, each read dry
                _read(by_sock[sock], time.monotonic())
        elapsed = time.monotonic() - start
        after = {s.session: s for s in admin.status()}
        if memory:
            rss.append(memory())
    finally:
        admin.close()
        for c in clients:
            c.close()
        context.destroy(linger=0)
    events = [e for c in clients for e in c.events.values()]
    outcomes = Counter(e.outcome for e in events if e.outcome)
    errors = {k: v for k, v in outcomes.items() if k not in ("applied", "superseded")}
    frames = {}
    for name in sessions:
        fps = after[name].fps_target
        produced = after[name].frame - before[name].frame
        frames[name] = {"produced": produced, "scheduled": round(fps * elapsed, 1),
                        "kept": round(produced / (fps * elapsed), 3),
                        "late": after[name].frames_late - before[name].frames_late}
    figures = {
        "plan": asdict(plan), "seconds_measured": round(elapsed, 2),
        "events": {"sent": sent, "per_second": round(sent / plan.seconds, 1), "resends": resent,
                   "accepted": sum(e.accepted for e in events), "applied": outcomes["applied"],
                   "superseded": outcomes["superseded"], "errored": sum(errors.values()), "errors": errors,
                   "lost": sum(not e.finals for e in events),
                   "two_final_answers": sum(len(e.finals) > 1 for e in events)},
        "first_answer_ms": _percentiles([e.answered - e.sent for e in events if e.answered is not None]),
        "frames": frames,
        "fps_kept_min": min(f["kept"] for f in frames.values()),
        "frames_late": sum(f["late"] for f in frames.values()),
        "rss_mib": {"start": round(rss[0], 1), "peak": round(max(rss), 1), "end": round(rss[-1], 1)} if rss else None,
    }
    log(json.dumps(figures))
    return figures


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    soak = subparsers.add_parser("soak", help="load-test a daemon: many controllers, every event accounted for")
    soak.add_argument("--model", action="append", help="model to serve (repeatable; default: random-small)")
    soak.add_argument("--controllers", type=int, default=100)
    soak.add_argument("--rate", type=float, default=50.0, help="events per second per controller")
    soak.add_argument("--seconds", type=float, default=60.0)
    soak.add_argument("--sessions", type=int, default=4)
    soak.add_argument("--fps", type=float, default=None, help="sessions' playback rate (default: the model's)")
    soak.add_argument("--hwm", type=int, default=64, help="the daemon's --hwm")
    soak.add_argument("--threads", type=int, default=None, help="torch CPU threads in the daemon")
    soak.add_argument("--json", type=Path, help="write the figures here (one object per model)")
    soak.set_defaults(run=cmd_soak)


def _serve(model: str, directory: str, args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, "-m", "runtime.daemon", "serve", "--model", model, "--session", "",
               "--control", f"ipc://{directory}/control", "--stream", f"ipc://{directory}/stream",
               "--hwm", str(args.hwm), "--max-sessions", str(args.sessions)]
    command += ["--threads", str(args.threads)] if args.threads else []
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])


def cmd_soak(args: argparse.Namespace) -> int:
    plan = LoadPlan(args.controllers, args.rate, args.seconds, args.sessions, args.fps)
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": "longlive soak " + " ".join(args.argv[1:])
               if hasattr(args, "argv") else "longlive soak", "models": {}}
    for model in args.model or ["random-small"]:
        with tempfile.TemporaryDirectory(prefix="longlive-soak-") as directory:
            daemon = _serve(model, directory, args)
            try:
                figures = run_load(f"ipc://{directory}/control", plan,
                                   memory=lambda: rss_mib(daemon.pid))
            finally:
                daemon.terminate()
                daemon.wait(timeout=60)
        results["models"][model] = figures
        ev = figures["events"]
        print(f"{model}: {ev['sent']} events ({ev['per_second']}/s) from {plan.controllers} controllers; "
              f"accepted {ev['accepted']}, applied {ev['applied']}, superseded {ev['superseded']}, "
              f"errored {ev['errored']} {ev['errors']}, lost {ev['lost']}, two final answers {ev['two_final_answers']}; "
              f"first answer {figures['first_answer_ms']} ms; fps kept {figures['fps_kept_min']:.0%}, "
              f"frames late {figures['frames_late']}; RSS MiB {figures['rss_mib']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
