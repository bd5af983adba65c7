"""``longlive eval toy``: the toy model's quality harness, measured with the attribute probe.

Every stream uses held-out (sky, ground, colour, shape) combinations (``world.is_held_out``),
so the numbers are about composing attributes the model never saw together. Streams run
through the real pipeline (engine + decoder), batched. Sections:

* switch: streams of ``pre`` frames under prompt A, then ``post`` under prompt B, for each
  transition (recache / none / cut): per-frame adherence, presence, colour, motion windows,
  switch latency and continuity (object centroid jump, frame-difference spike).
* long: one 1000-frame stream per variant (relative + sink, relative without sink, absolute
  + sink; absolute is limited to 1024 frames by the RoPE table), per-bucket statistics.
* drift: a 10 000-frame stream (relative + sink, recache switches every ``drift_switch``
  frames), per-1000-frame bucket statistics.

Writes JSON and a markdown report (docs/TOY_EVAL.md) plus contact sheets in docs/img/.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from runtime.pipeline import load_pipeline
from runtime.toy.model import DEFAULT_WEIGHTS
from toylab import world
from toylab.probe import motion_from_track, probe_frames, track
from toylab.prompts import make_prompt

MOTION_WINDOW = 12  # frames per motion window (>= 8, as the probe asks)
SETTLE = 6  # frames after a switch before motion windows start (a falling object is neither)


# -- per-frame scoring -----------------------------------------------------------------------

def score_frames(results, attrs: world.Attributes) -> dict[str, np.ndarray]:
    """Boolean per-frame agreement of probe results with the prompted attributes."""
    sky = np.array([r.sky == attrs.sky for r in results])
    ground = np.array([r.ground == attrs.ground for r in results])
    present = np.array([r.present for r in results])
    colour = np.array([r.present and r.colour == attrs.colour for r in results])
    shape = np.array([r.present and r.shape == attrs.shape for r in results])
    return {"sky": sky, "ground": ground, "present": present, "colour": colour, "shape": shape,
            "all": sky & ground & colour}


def motion_windows(results, attrs: world.Attributes, start: int, end: int) -> list[bool | None]:
    """Motion read on consecutive MOTION_WINDOW-frame windows of results[start:end]: match or not."""
    pos = track(results)
    out = []
    for a in range(start, end - MOTION_WINDOW + 1, MOTION_WINDOW):
        m = motion_from_track(pos[a:a + MOTION_WINDOW])
        out.append(None if m is None else m == attrs.motion)
    return out


def wrapped_jump(p: np.ndarray, q: np.ndarray) -> float:
    dx = (q[0] - p[0] + world.SIZE / 2) % world.SIZE - world.SIZE / 2
    return float(np.hypot(dx, q[1] - p[1]))


# -- generation --------------------------------------------------------------------------------

def generate(pipe, prompts_a: list[str], n_frames: int, seeds: list[int],
             switches: dict[int, tuple[list[str], str]] | None = None) -> np.ndarray:
    """Batched streams -> uint8 [S, n_frames, 64, 64, 3]; ``switches`` maps a frame to (prompts, transition)."""
    switches = switches or {}
    streams = [pipe.open_stream(pipe.encode_prompt(p), seed=s) for p, s in zip(prompts_a, seeds)]
    out = []
    try:
        made = 0
        while made < n_frames:
            if made in switches:
                prompts, transition = switches[made]
                for st, p in zip(streams, prompts):
                    st.switch_prompt(pipe.encode_prompt(p), transition)
            frames = pipe.step(streams)
            out.append(np.stack(frames))
            made += frames[0].shape[0]
    finally:
        for st in streams:
            pipe.close_stream(st)
    return np.concatenate(out, 1)[:, :n_frames]


def held_out_pairs(rng: np.random.Generator, n: int):
    """n (A, B, prompt A, prompt B) held-out switch pairs."""
    pairs = []
    for _ in range(n):
        a = world.sample_attributes(rng, "held_out")
        b = world.switched_attributes(rng, a, "held_out")
        pairs.append((a, b, make_prompt(a, rng), make_prompt(b, rng)))
    return pairs


# -- sections ------------------------------------------------------------------------------

def eval_switch(weights, n_streams: int, pre: int, post: int, seed: int, img_dir: Path | None,
                **overrides) -> dict:
    rng = np.random.default_rng(seed)
    pairs = held_out_pairs(rng, n_streams)
    seeds = [seed * 1000 + i for i in range(n_streams)]
    report = {}
    for transition in ("recache", "none", "cut"):
        pipe = load_pipeline("toy", weights=weights, max_streams=n_streams, **overrides)
        t0 = time.time()
        video = generate(pipe, [p[2] for p in pairs], pre + post, seeds,
                         {pre: ([p[3] for p in pairs], transition)})
        gen_s = time.time() - t0
        fb = pipe.frames_per_block
        acc = {k: [] for k in ("sky", "ground", "present", "colour", "shape", "all")}
        seg_adherent, seg_motion, latencies, jumps, spikes, present_after = [], [], [], [], [], []
        for (a, b, _, _), frames in zip(pairs, video):
            res = probe_frames(frames)
            for attrs, lo, hi in ((a, 0, pre), (b, pre, pre + post)):
                sc = score_frames(res[lo:hi], attrs)
                for k in acc:
                    acc[k].append(sc[k])
                seg_adherent.append(float(sc["all"].mean()) >= 0.5)
                start = lo + (SETTLE if lo else fb)
                wins = [w for w in motion_windows(res, attrs, start, hi) if w is not None]
                seg_motion.append(bool(wins) and float(np.mean(wins)) >= 0.5)
            after = score_frames(res[pre:], b)
            ok = after["sky"] & after["ground"] & (after["colour"] | (b.colour == a.colour) & after["present"])
            # latency: first frame after the switch from which the new attributes hold for a block
            lat = next((i for i in range(post - fb) if ok[i:i + fb].all()), None)
            latencies.append(lat)
            pos = track(res)
            if not np.isnan(pos[pre - 1, 0]) and not np.isnan(pos[pre, 0]):
                jumps.append(wrapped_jump(pos[pre - 1], pos[pre]))
            present_after.append(bool(after["present"][:fb].all()))
            diffs = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
            normal = np.median(np.delete(diffs, pre - 1))
            spikes.append(float(diffs[pre - 1] / max(normal, 1e-3)))
        lat_ok = [l for l in latencies if l is not None]
        normal_steps = []
        for frames in video[:, : pre]:
            pos = track(probe_frames(frames[-12:]))
            normal_steps += [wrapped_jump(pos[i], pos[i + 1]) for i in range(len(pos) - 1)
                             if not np.isnan(pos[i:i + 2, 0]).any()]
        report[transition] = {
            "frame_accuracy": {k: float(np.concatenate(v).mean()) for k, v in acc.items()},
            "segments_adherent": float(np.mean(seg_adherent)),
            "segments_motion_ok": float(np.mean(seg_motion)),
            "switch_latency_frames_mean": float(np.mean(lat_ok)) if lat_ok else None,
            "switch_within_one_block": float(np.mean([l is not None and l < fb for l in latencies])),
            "switch_never_obeyed": float(np.mean([l is None for l in latencies])),
            "object_present_first_block_after": float(np.mean(present_after)),
            "centroid_jump_px_median": float(np.median(jumps)) if jumps else None,
            "centroid_jump_measured": len(jumps),
            "centroid_step_normal_px_median": float(np.median(normal_steps)) if normal_steps else None,
            "frame_diff_spike_ratio_median": float(np.median(spikes)),
            "gen_fps": video.shape[0] * video.shape[1] / gen_s,
        }
        if img_dir is not None:
            for i in range(min(2, n_streams)):
                lo = max(0, pre - 24)
                sheet = world.contact_sheet(video[i, lo:pre + 24])
                _save_png(sheet, img_dir / f"toy_switch_{transition}_{i}.png")
        print(f"  switch/{transition}: {json.dumps(report[transition])}", flush=True)
    report["pairs"] = [{"a": asdict(a), "b": asdict(b), "prompt_a": pa, "prompt_b": pb} for a, b, pa, pb in pairs]
    return report


def bucket_stats(video: np.ndarray, attrs_per_frame: list[world.Attributes], bucket: int,
                 skip: set[int]) -> list[dict]:
    """Per-bucket statistics of one long stream; frames in ``skip`` (right after switches) are not scored."""
    out = []
    res = probe_frames(video)
    for lo in range(0, len(video), bucket):
        hi = min(lo + bucket, len(video))
        keep = [i for i in range(lo, hi) if i not in skip]
        sc = {k: [] for k in ("sky", "ground", "present", "colour", "all")}
        for i in keep:
            s = score_frames([res[i]], attrs_per_frame[i])
            for k in sc:
                sc[k].append(bool(s[k][0]))
        wins = []
        for a in range(lo, hi - MOTION_WINDOW + 1, MOTION_WINDOW):
            if any(i in skip for i in range(a, a + MOTION_WINDOW)):
                continue
            if attrs_per_frame[a] != attrs_per_frame[a + MOTION_WINDOW - 1]:
                continue
            m = motion_from_track(track(res[a:a + MOTION_WINDOW]))
            if m is not None:
                wins.append(m == attrs_per_frame[a].motion)
        out.append({"frames": [lo, hi], **{k: float(np.mean(v)) for k, v in sc.items()},
                    "motion_windows_ok": float(np.mean(wins)) if wins else None, "motion_windows": len(wins),
                    "mean_abs_pixel": float(np.abs(video[lo:hi].astype(np.float32) - 127.5).mean())})
    return out


def long_stream(weights, n_frames: int, switch_every: int, seed: int, bucket: int, **overrides) -> dict:
    rng = np.random.default_rng(seed)
    pipe = load_pipeline("toy", weights=weights, max_streams=1, **overrides)
    attrs = [world.sample_attributes(rng, "held_out")]
    prompts = [make_prompt(attrs[0], rng)]
    switches = {}
    for f in range(switch_every, n_frames, switch_every):
        attrs.append(world.switched_attributes(rng, attrs[-1], "held_out"))
        prompts.append(make_prompt(attrs[-1], rng))
        switches[f] = ([prompts[-1]], "recache")
    t0 = time.time()
    video = generate(pipe, prompts[:1], n_frames, [seed], switches)[0]
    gen_s = time.time() - t0
    per_frame = [attrs[f // switch_every] for f in range(n_frames)]
    skip = {f + d for f in switches for d in range(SETTLE)}
    buckets = bucket_stats(video, per_frame, bucket, skip)
    whole = bucket_stats(video, per_frame, n_frames, skip)[0]
    return {"frames": n_frames, "switch_every": switch_every, "overrides": overrides, "gen_fps": n_frames / gen_s,
            "whole": whole, "buckets": buckets, "video": video}


# -- report ------------------------------------------------------------------------------------

def _save_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _num(x, fmt="{:.2f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def markdown(result: dict) -> str:
    lines = ["# Toy model evaluation", "",
             f"Generated by `longlive eval toy` ({result['meta']['date']}, weights `{result['meta']['weights']}`, "
             f"{result['meta']['threads']} torch threads, {result['meta']['wall_s']:.0f} s). Held-out attribute "
             "combinations only; every number is read from generated pixels by `toylab.probe`. "
             "Raw numbers: `docs/toy_eval.json`.", ""]
    sw = result["switch"]
    n, pre, post = result["meta"]["switch_streams"], result["meta"]["pre"], result["meta"]["post"]
    lines += [f"## Prompt switch: transitions ({n} streams, switch after frame {pre}, {post} frames after)", "",
              "| metric | recache | none | cut |", "|---|---|---|---|"]
    rows = [
        ("frames: sky right", lambda r: _pct(r["frame_accuracy"]["sky"])),
        ("frames: ground right", lambda r: _pct(r["frame_accuracy"]["ground"])),
        ("frames: object present", lambda r: _pct(r["frame_accuracy"]["present"])),
        ("frames: object colour right", lambda r: _pct(r["frame_accuracy"]["colour"])),
        ("frames: shape right", lambda r: _pct(r["frame_accuracy"]["shape"])),
        ("frames: sky+ground+colour right", lambda r: _pct(r["frame_accuracy"]["all"])),
        ("segments adherent (>= 50 % frames all right)", lambda r: _pct(r["segments_adherent"])),
        ("segments moving as prompted", lambda r: _pct(r["segments_motion_ok"])),
        ("switch obeyed within one block", lambda r: _pct(r["switch_within_one_block"])),
        ("switch latency, frames (mean, when obeyed)", lambda r: _num(r["switch_latency_frames_mean"])),
        ("object present in the block after the switch", lambda r: _pct(r["object_present_first_block_after"])),
        ("object centroid jump at the switch, px (median)", lambda r: _num(r["centroid_jump_px_median"])),
        ("normal per-frame centroid step, px (median)", lambda r: _num(r["centroid_step_normal_px_median"])),
        ("frame-difference spike at the switch (x median)", lambda r: _num(r["frame_diff_spike_ratio_median"])),
        ("generation fps (batched streams)", lambda r: _num(r["gen_fps"], "{:.1f}")),
    ]
    for name, fn in rows:
        lines.append(f"| {name} | " + " | ".join(fn(sw[t]) for t in ("recache", "none", "cut")) + " |")
    lines += ["", "The frame-difference spike includes the intended background change (sky/ground swap), so "
              "it is large for every transition; the centroid jump is the object-continuity measure.", ""]
    lines += ["Contact sheets (24 frames before and after the switch, 12 per row; the switch is the "
              "first frame of row 3):", ""]
    for t in ("recache", "none", "cut"):
        lines.append(f"![{t}](img/toy_switch_{t}_0.png)")
        lines.append("")
    lines += ["## Long streams: sink and positions", "",
              "| variant | frames | sky | ground | present | colour | sky+ground+colour | motion windows ok | fps |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["long"].items():
        w = r["whole"]
        lines.append(f"| {name} | {r['frames']} | {_pct(w['sky'])} | {_pct(w['ground'])} | {_pct(w['present'])} | "
                     f"{_pct(w['colour'])} | {_pct(w['all'])} | {_pct(w['motion_windows_ok'])} | {r['gen_fps']:.1f} |")
    lines += ["", "Absolute positions are limited to the RoPE table's 1024 latent frames, so that comparison "
              "stops at 1000 frames; relative positions have no limit (see the drift section).", ""]
    for name, r in result["long"].items():
        lines.append(f"Per-bucket ({name}): " + ", ".join(
            f"{b['frames'][0]}-{b['frames'][1]}: present {_pct(b['present'])} / all {_pct(b['all'])}"
            for b in r["buckets"]))
        lines.append("")
    d = result.get("drift")
    if d:
        lines += [f"## Drift: {d['frames']} frames, relative positions + sink, recache switch every "
                  f"{d['switch_every']} frames", "",
                  "| frames | sky | ground | present | colour | sky+ground+colour | motion windows ok | mean abs pixel |",
                  "|---|---|---|---|---|---|---|---|"]
        for b in d["buckets"]:
            lines.append(f"| {b['frames'][0]}-{b['frames'][1]} | {_pct(b['sky'])} | {_pct(b['ground'])} | "
                         f"{_pct(b['present'])} | {_pct(b['colour'])} | {_pct(b['all'])} | "
                         f"{_pct(b['motion_windows_ok'])} | {b['mean_abs_pixel']:.1f} |")
        lines += ["", "![drift](img/toy_drift_end.png)", "",
                  "*The last 48 frames of the drift stream.*", ""]
    return "\n".join(lines) + "\n"


def run_eval(weights: str | None, out_json: Path, out_md: Path, img_dir: Path, switch_streams: int = 8,
             pre: int = 48, post: int = 48, long_frames: int = 1000, drift_frames: int = 10_000,
             drift_switch: int = 300, seed: int = 0) -> dict:
    t0 = time.time()
    result = {"meta": {"weights": str(weights or DEFAULT_WEIGHTS), "threads": torch.get_num_threads(),
                       "date": time.strftime("%Y-%m-%d"), "switch_streams": switch_streams, "pre": pre,
                       "post": post, "seed": seed}}
    print("switch section ...", flush=True)
    result["switch"] = eval_switch(weights, switch_streams, pre, post, seed, img_dir)
    result["long"] = {}
    variants = {"relative + sink 3": {}, "relative, no sink (window 9)": {"sink_frames": 0},
                "absolute + sink 3": {"positions": "absolute"}}
    for name, ov in variants.items():
        print(f"long stream: {name} ...", flush=True)
        r = long_stream(weights, long_frames, 240, seed + 1, 250, **ov)
        r.pop("video")
        result["long"][name] = r
    if drift_frames:
        print(f"drift stream: {drift_frames} frames ...", flush=True)
        d = long_stream(weights, drift_frames, drift_switch, seed + 2, 1000)
        _save_png(world.contact_sheet(d.pop("video")[-48:]), img_dir / "toy_drift_end.png")
        result["drift"] = d
    result["meta"]["wall_s"] = time.time() - t0
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1) + "\n")
    out_md.write_text(markdown(result))
    print(f"wrote {out_json} and {out_md} ({result['meta']['wall_s']:.0f} s)", flush=True)
    return result


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate the toy model against the world's ground truth")
    p.add_argument("model", choices=["toy"])
    p.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    p.add_argument("--streams", type=int, default=8, help="held-out switch streams per transition")
    p.add_argument("--pre", type=int, default=48, help="frames before the switch")
    p.add_argument("--post", type=int, default=48, help="frames after the switch")
    p.add_argument("--long-frames", type=int, default=1000)
    p.add_argument("--drift-frames", type=int, default=10_000, help="0 skips the drift stream")
    p.add_argument("--drift-switch", type=int, default=300, help="frames between prompt switches in the drift stream")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default="docs/toy_eval.json")
    p.add_argument("--md", default="docs/TOY_EVAL.md")
    p.add_argument("--img-dir", default="docs/img")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    run_eval(args.weights, Path(args.json), Path(args.md), Path(args.img_dir), args.streams, args.pre, args.post,
             args.long_frames, args.drift_frames, args.drift_switch, args.seed)
    return 0
