"""``longlive demo``: one command that starts a daemon with the toy model and opens a demo window.

The daemon runs as a child process (``python -m runtime.daemon serve`` on free loopback
ports; its log goes to ``<out>/daemon.log``), so the window and the generator never share a
Python interpreter, and the demo talks to it through the protocol like any game. With no
display it says so in one line and renders the story offline to an mp4 instead.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

STOP_S = 10.0  # how long the child daemon gets to stop cleanly before it is killed


def default_story() -> Path:
    """The example story the story player and the headless render use when given none."""
    import scripting.examples

    return Path(scripting.examples.__file__).with_name("choices.py")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="open the viewer (or --story / --arcade) on a fresh toy daemon")
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--story", type=Path, metavar="FILE", help="open the story player on this story")
    mode.add_argument("--arcade", action="store_true", help="open the arcade (the daemon loads its rules plugin)")
    demo.add_argument("--connect", metavar="CONTROL,STREAM",
                      help="use a running daemon at these endpoints instead of starting one")
    demo.add_argument("--model", default="toy", help="model of the daemon it starts (and of the headless render)")
    demo.add_argument("--threads", type=int, default=None, help="torch CPU threads of the daemon / render")
    demo.add_argument("--out", type=Path, default=Path("longlive-demo"),
                      help="folder for screenshots, recordings, the daemon's log and the headless render")
    demo.set_defaults(run=cmd_demo)


def display_problem() -> str | None:
    """Why no window can open here (None if one can)."""
    driver = os.environ.get("SDL_VIDEODRIVER", "")
    if driver in ("dummy", "offscreen"):
        return f"SDL_VIDEODRIVER={driver} draws nowhere"
    if sys.platform.startswith(("linux", "freebsd", "openbsd")) and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "neither DISPLAY nor WAYLAND_DISPLAY is set"
    import pygame

    try:
        pygame.display.init()
    except pygame.error as exc:
        return f"SDL cannot open a window ({exc})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(model: str, out: Path, arcade: bool, story: bool, threads: int | None) -> tuple[subprocess.Popen, str, str]:
    """`longlive serve` as a child process on free loopback ports; returns it and its endpoints."""
    control, stream = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "runtime.daemon", "serve", "--model", model, "--control", control,
               "--stream", stream, "--no-entry-points"]
    if threads:
        command += ["--threads", str(threads)]
    if arcade:
        command += ["--plugin", "plugins.examples.arcade_rules"]
    if story:
        command += ["--session", ""]  # the story opens its own session
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "daemon.log", "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return child, control, stream


def stop_daemon(child: subprocess.Popen) -> None:
    child.terminate()  # SIGTERM: the daemon stops after the block in progress
    try:
        child.wait(STOP_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def render_headless(story: Path, model: str, out: Path, threads: int | None) -> Path:
    """The story rendered offline (scripting's renderer, questions answered by their defaults)."""
    import torch

    from runtime.pipeline import load_pipeline
    from scripting.plan import plan_story
    from scripting.render import render_to_file
    from scripting.runner import load_story

    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(model, device="cpu", max_streams=1)
    plan = plan_story(load_story(story), pipe.fps, [])
    path = out / f"{story.stem}.mp4"
    render_to_file(pipe, plan, 0, path, progress=False)
    return path


def cmd_demo(args: argparse.Namespace) -> int:
    from scripting.errors import ScriptError

    story = args.story or default_story()
    if args.story is not None and not args.story.is_file():
        print(f"longlive demo: no story file {args.story}", file=sys.stderr)
        return 2
    problem = display_problem()
    if problem is not None:
        print(f"longlive demo: no display ({problem}); rendering {story} to an mp4 instead", flush=True)
        try:
            path = render_headless(story, args.model, args.out, args.threads)
        except (ScriptError, ValueError, OSError) as exc:
            print(f"longlive demo: {exc}", file=sys.stderr)
            return 2
        print(path)
        return 0
    child = None
    if args.connect:
        control, _, stream = args.connect.partition(",")
        if not control or not stream:
            print("longlive demo: --connect takes CONTROL,STREAM, e.g. tcp://127.0.0.1:5555,tcp://127.0.0.1:5556",
                  file=sys.stderr)
            return 2
    else:
        child, control, stream = start_daemon(args.model, args.out, args.arcade, args.story is not None, args.threads)
        print(f"longlive demo: daemon pid {child.pid} on {control}, {stream} (log {args.out / 'daemon.log'})")
    try:
        return play(args, control, stream)
    finally:
        if child is not None:
            stop_daemon(child)


def play(args: argparse.Namespace, control: str, stream: str) -> int:
    """Open the window and run the chosen demo until Esc or the window closes."""
    from demos.link import Link
    from demos.ui import open_window, run
    from scripting.errors import ScriptError

    import pygame

    open_window("LongLive")  # first: the apps build fonts and surfaces
    if args.story is not None:
        from demos.story import StoryApp

        link = Link(control, stream, session="story", name="story")
        try:
            app = StoryApp(link, args.story, out_dir=args.out)
        except ScriptError as exc:
            link.close()
            print(f"longlive demo: {exc}", file=sys.stderr)
            return 2
    elif args.arcade:
        from demos.arcade import ArcadeApp

        app = ArcadeApp(Link(control, stream, name="arcade"), out_dir=args.out)
    else:
        from demos.viewer import ViewerApp

        app = ViewerApp(Link(control, stream, name="viewer"), out_dir=args.out)
    pygame.display.set_caption(app.title)
    try:
        run(app)
    finally:
        app.close()
    return 0
