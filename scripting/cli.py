"""``longlive play``, ``render`` and ``check``: a story live on a daemon, offline into an
mp4, or checked on every path. ``play`` speaks the protocol only and never loads torch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from protocol import constants as C
from scripting.errors import ScriptError, display_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add play, render and check; each sets `run(args) -> exit code`."""
    play = subparsers.add_parser("play", help="play a story live on a running daemon (as a controller)")
    play.add_argument("story", type=Path)
    play.add_argument("--connect", metavar="HOST", help="daemon host: tcp://HOST:5555 and :5556")
    play.add_argument("--control", default=C.DEFAULT_CONTROL_ENDPOINT, help="control endpoint")
    play.add_argument("--stream", default=C.DEFAULT_STREAM_ENDPOINT, help="stream endpoint")
    play.add_argument("--session", default="story", help="session the story opens (and closes at its end)")
    play.add_argument("--seed", type=int, default=0)
    play.add_argument("--no-terminal", action="store_true", help="do not read answers from stdin")
    play.add_argument("--margin-blocks", type=int, default=2, help="blocks between the live video and the "
                      "earliest frame an answer counts at")
    play.add_argument("--keep-open", action="store_true", help="leave the session running after the story")
    play.add_argument("--log", type=Path, help="write the answers (with their frames) as JSON, for render --answers-file")
    play.add_argument("--curve-server-key", type=Path, help="the daemon's public key file (.key)")
    play.add_argument("--curve-secret", type=Path, help="this client's certificate (.key_secret)")
    play.set_defaults(run=cmd_play)

    render = subparsers.add_parser("render", help="render a story offline to an mp4 + timeline sidecar")
    render.add_argument("story", type=Path)
    render.add_argument("-o", "--out", type=Path, required=True, help="the mp4 (the sidecar goes beside it as .json)")
    render.add_argument("--answers", default="", help="inputs in order, e.g. 2,1@48,jump,_ (see docs/SCRIPTING.md)")
    render.add_argument("--answers-file", type=Path, help="inputs as JSON (e.g. from play --log)")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--frames", type=int, default=None, help="render only the first N frames (a preview)")
    render.add_argument("--model", default="toy")
    render.add_argument("--weights", default=None)
    render.add_argument("--device", default="cpu")
    render.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    render.set_defaults(run=cmd_render)

    check = subparsers.add_parser("check", help="check every path of a story without generating")
    check.add_argument("story", type=Path, nargs="+")
    check.add_argument("--model", default="toy", help="the model whose prompt encoder judges the prompts")
    check.add_argument("--weights", default=None)
    check.add_argument("--max-paths", type=int, default=2000)
    check.add_argument("--max-questions", type=int, default=64, help="per path")
    check.add_argument("--max-minutes", type=float, default=60.0, help="of video, per path")
    check.set_defaults(run=cmd_check)


def _fail(exc: Exception) -> int:
    print(f"longlive: {exc}", file=sys.stderr)
    return 2


def cmd_play(args: argparse.Namespace) -> int:
    from protocol.security import CurveClient
    from scripting.live import LiveConfig, play
    from scripting.runner import load_story

    control, stream = args.control, args.stream
    if args.connect:
        control, stream = f"tcp://{args.connect}:5555", f"tcp://{args.connect}:5556"
    curve = CurveClient.from_files(args.curve_server_key, args.curve_secret) if args.curve_server_key else None
    config = LiveConfig(control=control, stream=stream, session=args.session, seed=args.seed,
                        terminal=not args.no_terminal, margin_blocks=args.margin_blocks,
                        keep_open=args.keep_open)
    try:
        result = play(load_story(args.story), config, curve=curve)
    except (ScriptError, RuntimeError, TimeoutError) as exc:
        return _fail(exc)
    for frame, cue in result.timeline:
        print(f"frame {frame}: {cue.text} ({cue.transition}, {display_path(cue.file)}:{cue.line})")
    for line in result.late:
        print(f"late: {line}", file=sys.stderr)
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    answers = [a.to_json() for a in result.answers]
    print(f"story ended at frame {result.end}; answers: {json.dumps(answers)}")
    if args.log:
        args.log.write_text(json.dumps({"story": str(args.story), "seed": args.seed, "answers": answers}, indent=1) + "\n")
    return 1 if result.late else 0


def cmd_render(args: argparse.Namespace) -> int:
    import torch

    from runtime.pipeline import load_pipeline
    from scripting.answers import parse_answers, read_answers
    from scripting.plan import plan_story
    from scripting.render import render_to_file
    from scripting.runner import load_story

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        inputs = read_answers(args.answers_file) if args.answers_file else parse_answers(args.answers)
        pipe = load_pipeline(args.model, device=args.device, weights=args.weights, max_streams=1)
        plan = plan_story(load_story(args.story), pipe.fps, inputs)
        for text, cue in {c.text: c for c in plan.prompts[::-1]}.items():  # each text once, at its first cue
            if (warning := pipe.lint(text)) is not None:
                print(f"warning: {display_path(cue.file)}:{cue.line}: {warning}", file=sys.stderr)
        timeline = render_to_file(pipe, plan, args.seed, args.out, limit=args.frames)
    except (ScriptError, ValueError) as exc:
        return _fail(exc)
    for entry in timeline.timeline:
        print(f"frame {entry.frame}: {entry.text} ({entry.transition or 'open'})")
    print(f"wrote {args.out} ({timeline.frames} frames, {timeline.frames / pipe.fps:g} s) "
          f"and {args.out.with_suffix('.json')}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import torch

    from runtime.pipeline import load_pipeline
    from scripting.check import Bounds, check_story, summary
    from scripting.runner import load_story

    torch.set_num_threads(1)
    pipe = load_pipeline(args.model, weights=args.weights, max_streams=1)
    bounds = Bounds(max_paths=args.max_paths, max_questions=args.max_questions, max_seconds=args.max_minutes * 60)
    failed = False
    for path in args.story:
        try:
            report = check_story(load_story(path), pipe.fps, pipe.check_prompt, bounds)
        except ScriptError as exc:
            print(exc)
            failed = True
            continue
        for problem in report.problems:
            print(problem)
        print(f"{path}: " + ("; ".join(summary(report, pipe.fps)[-1:]) or "no path ends"))
        for line in summary(report, pipe.fps)[:-1]:
            print(line)
        failed |= bool(report.problems) or not report.paths
        print(f"{path}: {'FAILED, ' + str(len(report.problems)) + ' problem(s)' if report.problems else 'ok'}")
    return 1 if failed else 0
