"""``longlive eval toy``: the toy model's evaluation, built to be able to fail.

Streams run through the real pipeline (engine + decoder, batched): prompt A for ``pre`` frames,
then a switch to prompt B and ``post`` more frames. Every attribute B pins down is scored on the
post-switch frames by ``toylab.scoring`` from ``toylab.probe`` readings; time-to-obey per changed
attribute. Sets: ``validation`` (training-side combinations; template sentences and
``data/validation_prompts.tsv``) for tuning, ``test`` (held-out combinations *and* held-out
user phrasings, ``data/test_prompts.tsv``) for reporting only. Negative controls go through the
same scoring on the test pairs: ground-truth world frames (must pass), an untrained model, a
frozen first frame, switches ignored, a still coloured bar. Transitions recache / none / cut are
all trained settings; untrained settings (absolute positions, no sink) are not evaluated.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtime.pipeline import PromptError, load_pipeline
from runtime.toy.model import DEFAULT_WEIGHTS, ToyConfig, ToyModel, save_weights
from toylab import scoring, world
from toylab.probe import probe_frames
from toylab.prompts import make_prompt

DATA = Path(__file__).with_name("data")
TRANSITIONS = ("recache", "none", "cut")
CONTROLS = ("ground truth", "untrained model", "frozen first frame", "switches ignored", "still bar")


@dataclass(frozen=True)
class Prompted:
    text: str
    attrs: world.Attributes


def read_prompts(path: Path) -> list[Prompted]:
    """``sky ground colour shape motion weather<TAB>sentence`` lines; # comments."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            labels, text = line.split("\t")
            out.append(Prompted(text, world.Attributes(*labels.split())))
    return out


def switch_pairs(prompts: list[Prompted], n: int, seed: int) -> list[tuple[Prompted, Prompted]]:
    """n (A, B) pairs over `prompts`, every prompt used about equally often as B, A != B."""
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < n:
        order = rng.permutation(len(prompts))
        for i, j in enumerate(order):
            k = order[(i + 1 + int(rng.integers(len(prompts) - 1))) % len(prompts)]
            if prompts[k].attrs != prompts[j].attrs:
                pairs.append((prompts[k], prompts[j]))
    return pairs[:n]


def validation_prompts(seed: int, n_template: int) -> list[Prompted]:
    rng = np.random.default_rng(seed)
    made = [world.sample_attributes(rng, "train") for _ in range(n_template)]
    return read_prompts(DATA / "validation_prompts.tsv") + [Prompted(make_prompt(a, rng), a) for a in made]


# -- frames ------------------------------------------------------------------------------------

def generate(pipe, pairs, pre: int, post: int, transition: str | None, seed: int) -> tuple[np.ndarray, list[bool]]:
    """uint8 [S, pre + post, 64, 64, 3] and per stream whether a prompt was refused (its frames
    are then not generated and score as failures). ``transition`` None ignores the switch."""
    ok = []
    for a, b in pairs:
        try:
            pipe.encode_prompt(a.text), pipe.encode_prompt(b.text)
            ok.append(True)
        except PromptError:
            ok.append(False)
    use = [p for p, good in zip(pairs, ok) if good]
    video = np.zeros((len(pairs), pre + post, 64, 64, 3), np.uint8)
    if not use:
        return video, [not g for g in ok]
    streams = [pipe.open_stream(pipe.encode_prompt(a.text), seed=seed + i) for i, (a, _) in enumerate(use)]
    out, made = [], 0
    try:
        while made < pre + post:
            if made == pre and transition is not None:
                for st, (_, b) in zip(streams, use):
                    st.switch_prompt(pipe.encode_prompt(b.text), transition)
            frames = pipe.step(streams)
            out.append(np.stack(frames))
            made += frames[0].shape[0]
    finally:
        for st in streams:
            pipe.close_stream(st)
    video[np.flatnonzero(ok)] = np.concatenate(out, 1)[:, :pre + post]
    return video, [not g for g in ok]


def ground_truth(pairs, pre: int, post: int, objects: bool = True) -> np.ndarray:
    """What the world shows for each pair: a stream from the spawn point, switched at `pre`."""
    out = []
    for a, b in pairs:
        states = world.trajectory(world.spawn_state(a.attrs), pre)
        states += world.trajectory(world.with_attributes(world.step(states[-1]), b.attrs), post)
        out.append(world.render(states, objects=objects))
    return np.stack(out)


def still_bar(pairs, pre: int, post: int) -> np.ndarray:
    """The right scene (weather included) with a still 30x8 bar of the prompted colour at the spawn."""
    video = ground_truth(pairs, pre, post, objects=False)
    top = int(world.FLOOR) - 8
    for v, (a, b) in zip(video, pairs):
        v[:pre, top:top + 8, 17:47] = world.COLOUR_RGB[a.attrs.colour]
        v[pre:, top:top + 8, 17:47] = world.COLOUR_RGB[b.attrs.colour]
    return video


# -- scoring and summary -----------------------------------------------------------------------

def score_video(video: np.ndarray, pairs, refused: list[bool], pre: int, fb: int) -> list[scoring.SwitchScore | None]:
    return [None if bad else scoring.score_switch(probe_frames(v), a.attrs, b.attrs, pre, fb)
            for v, (a, b), bad in zip(video, pairs, refused)]


def _rate(k: int, n: int) -> dict:
    lo, hi = scoring.wilson(k, n)
    return {"rate": k / n if n else None, "k": k, "n": n, "lo": lo, "hi": hi}


def summarise(scores: list[scoring.SwitchScore | None], pairs, post: int, fb: int, seed: int = 0) -> dict:
    """Rates with 95 % intervals. Frame rates: n = frames, interval by resampling streams; a refused
    prompt counts all its frames and windows as failures."""
    rng = np.random.default_rng(seed)
    n_frames = post - fb
    n_windows = len(range(scoring.MOTION_START, post - scoring.MOTION_WINDOW + 1, scoring.MOTION_WINDOW))
    out: dict = {}
    for attr in scoring.FRAME_ATTRS:
        per = [s.frames[attr] if s else [False] * n_frames for s in scores]
        k, n = sum(map(sum, per)), sum(map(len, per))
        out[f"frames {attr}"] = {**_rate(k, n), **dict(zip(("lo", "hi"), scoring.stream_bootstrap(per, rng)))}
    scene = [[x and y and z for x, y, z in zip(s.frames["sky"], s.frames["ground"], s.frames["colour"])]
             if s else [False] * n_frames for s in scores]
    out["frames scene (sky+ground+colour)"] = {**_rate(sum(map(sum, scene)), sum(map(len, scene))),
                                              **dict(zip(("lo", "hi"), scoring.stream_bootstrap(scene, rng)))}
    for w in world.WEATHERS:
        per = [(s.frames["weather"] if s else [False] * n_frames) for s, (_, b) in zip(scores, pairs)
               if b.attrs.weather == w]
        out[f"frames weather {w}"] = {**_rate(sum(map(sum, per)), sum(map(len, per))),
                                      **dict(zip(("lo", "hi"), scoring.stream_bootstrap(per, rng)))}
    for m in world.MOTIONS:
        wins = [x for s, (_, b) in zip(scores, pairs) if b.attrs.motion == m
                for x in (s.motion if s else [False] * n_windows)]
        out[f"motion windows {m}"] = _rate(sum(wins), len(wins))
    out["switch: every changed attribute obeyed in time"] = _rate(sum(bool(s and s.obeyed) for s in scores), len(scores))
    lat = {}
    for attr in ("sky", "ground", "colour", "shape", "weather", "motion"):
        vals = [s.latency[attr] if s else None for s, (a, b) in zip(scores, pairs)
                if getattr(a.attrs, attr) != getattr(b.attrs, attr)]
        limit = scoring.MOTION_START if attr == "motion" else fb - 1
        got = [v for v in vals if v is not None]
        lat[attr] = {**_rate(sum(v is not None and v <= limit for v in vals), len(vals)),
                     "mean_frames": float(np.mean(got)) if got else None}
    out["time to obey"] = lat
    jumps = [s.jump for s in scores if s and s.jump is not None]
    steps = [s.step for s in scores if s and s.step is not None]
    out["jump px"] = {"median": float(np.median(jumps)) if jumps else None, "n": len(jumps),
                      "normal_step": float(np.median(steps)) if steps else None}
    out["refused prompts"] = sum(s is None for s in scores)
    return out


# -- the run -----------------------------------------------------------------------------------

def _pipe(weights, n: int):
    return load_pipeline("toy", weights=weights, max_streams=n)


def evaluate_set(weights, pairs, pre: int, post: int, seed: int, transitions=TRANSITIONS,
                 controls: bool = True, log=print) -> dict:
    fb = ToyConfig().frames_per_block
    res, videos = {}, {}
    for t in transitions:
        t0 = time.time()
        video, refused = generate(_pipe(weights, len(pairs)), pairs, pre, post, t, seed)
        res[t] = summarise(score_video(video, pairs, refused, pre, fb), pairs, post, fb)
        res[t]["gen_fps"] = (~np.array(refused)).sum() * (pre + post) / (time.time() - t0)
        videos[t] = (video, refused)
        log(f"  {t}: {time.time() - t0:.0f} s")
    if controls:
        gt = ground_truth(pairs, pre, post)
        none = [False] * len(pairs)
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(seed)
            save_weights(ToyModel(ToyConfig()), Path(tmp) / "toy.safetensors")
            untrained = generate(_pipe(Path(tmp) / "toy.safetensors", len(pairs)), pairs, pre, post, "recache", seed)
        model, refused = videos.get("recache") or generate(_pipe(weights, len(pairs)), pairs, pre, post, "recache", seed)
        ignored = generate(_pipe(weights, len(pairs)), pairs, pre, post, None, seed)
        runs = {"ground truth": (gt, none), "untrained model": untrained,
                "frozen first frame": (np.repeat(model[:, :1], pre + post, 1), refused),
                "switches ignored": ignored, "still bar": (still_bar(pairs, pre, post), none)}
        for name, (video, bad) in runs.items():
            res[name] = summarise(score_video(video, pairs, bad, pre, fb), pairs, post, fb)
        log("  controls done")
    if "recache" in videos:
        res["_sheets"] = videos["recache"][0][:2, max(0, pre - 12):pre + 36]
    return res


def drift(weights, prompts: list[Prompted], n_frames: int, every: int, bucket: int,
          seed: int) -> tuple[list[dict], np.ndarray]:
    """One stream of n_frames with a recache switch every `every` frames through `prompts`;
    per bucket: scene, intact object and weather frames, motion windows (switch settling skipped)."""
    pipe = _pipe(weights, 1)
    rng = np.random.default_rng(seed)
    order = [prompts[i] for i in rng.permutation(len(prompts))]
    good = [p for p in order if _encodes(pipe, p.text)]
    seq = [good[i % len(good)] for i in range(-(-n_frames // every))]
    stream = pipe.open_stream(pipe.encode_prompt(seq[0].text), seed=seed)
    frames, made = [], 0
    while made < n_frames:
        if made and made % every == 0:
            stream.switch_prompt(pipe.encode_prompt(seq[made // every].text), "recache")
        frames.append(pipe.step([stream])[0])
        made += frames[-1].shape[0]
    pipe.close_stream(stream)
    video = np.concatenate(frames)[:n_frames]
    res = probe_frames(video)
    pos = scoring.track(res)
    out = []
    for lo in range(0, n_frames, bucket):
        fr = {k: [] for k in ("scene", "object", "weather")}
        wins = []
        for f in range(lo, min(lo + bucket, n_frames)):
            if f % every < pipe.frames_per_block:
                continue
            c = scoring.frame_checks(res[f], seq[f // every].attrs)
            fr["scene"].append(c["sky"] and c["ground"] and c["colour"])
            fr["object"].append(c["object"])
            fr["weather"].append(c["weather"])
        for w in range(lo, min(lo + bucket, n_frames) - scoring.MOTION_WINDOW + 1, scoring.MOTION_WINDOW):
            seg_start = (w // every) * every + scoring.MOTION_START
            if w < seg_start or (w + scoring.MOTION_WINDOW - 1) // every != w // every:
                continue
            a = seq[w // every].attrs
            wins.append(scoring.motion_ok(pos[w:w + scoring.MOTION_WINDOW], a.motion, a.shape))
        out.append({"frames": [lo, min(lo + bucket, n_frames)], **{k: float(np.mean(v)) for k, v in fr.items()},
                    "motion": float(np.mean(wins)) if wins else None, "motion_n": len(wins)})
    return out, video[-36:]


def _encodes(pipe, text: str) -> bool:
    try:
        pipe.encode_prompt(text)
        return True
    except PromptError:
        return False


# -- report ------------------------------------------------------------------------------------

NOTES = "<!-- written notes below: kept when the tables above are regenerated -->"
ROWS = ([f"frames {a}" for a in ("sky", "ground", "colour", "shape", "object", "weather")]
        + ["frames scene (sky+ground+colour)"] + [f"frames weather {w}" for w in world.WEATHERS]
        + [f"motion windows {m}" for m in world.MOTIONS] + ["switch: every changed attribute obeyed in time"])


def _cell(r: dict) -> str:
    if r["rate"] is None:
        return "n/a"
    return f"{100 * r['rate']:.0f} % [{100 * r['lo']:.0f}-{100 * r['hi']:.0f}]"


def table(res: dict, columns: list[str]) -> list[str]:
    lines = ["| metric (n) | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in ROWS:
        n = res[columns[0]][row]["n"]
        lines.append(f"| {row} ({n}) | " + " | ".join(_cell(res[c][row]) for c in columns) + " |")
    return lines


def markdown(result: dict) -> str:
    m = result["meta"]
    test = result["test"]
    lines = ["# Toy model evaluation (generated)", "",
             f"`longlive eval toy` on {m['date']}, weights `{m['weights']}`, {m['threads']} torch thread(s), "
             f"{m['wall_s']:.0f} s{' (--quick)' if m['quick'] else ''}. Frames are read back by `toylab.probe` and "
             "scored by `toylab.scoring` against what each prompt pins down; raw numbers: `docs/toy_eval.json`.", "",
             f"## Test set: {m['test_pairs']} switches per transition (held-out combinations, held-out user phrasings)", "",
             f"Each stream: prompt A for {m['pre']} frames from the spawn point, then a switch to prompt B and "
             f"{m['post']} frames. Frame rates count post-switch frames after the first block "
             "(interval: 2.5-97.5 % over streams resampled); motion windows are "
             f"{scoring.MOTION_WINDOW} frames from {scoring.MOTION_START} frames after the switch (Wilson interval); "
             "a missing or doubled object fails, a refused prompt fails everything.", "",
             "Transitions (all three trained):", ""]
    lines += table(test, list(TRANSITIONS))
    lines += ["", "Negative controls (same pairs and scoring; ground truth is the positive control):", ""]
    lines += table(test, [c for c in CONTROLS if c in test])
    lines += ["", "Time to obey, per changed attribute (recache): share obeyed within one block "
              f"(motion: a right {scoring.MOTION_WINDOW}-frame window starting within {scoring.MOTION_START} frames), "
              "and mean frames when obeyed:", "", "| attribute | n changed | recache | none | cut |", "|---|---|---|---|---|"]
    for attr, r in test["recache"]["time to obey"].items():
        cells = []
        for t in TRANSITIONS:
            x = test[t]["time to obey"][attr]
            mean = "n/a" if x["mean_frames"] is None else f"{x['mean_frames']:.1f}"
            cells.append(f"{_cell(x)}, {mean} fr")
        lines.append(f"| {attr} | {r['n']} | " + " | ".join(cells) + " |")
    lines += ["", "| continuity | recache | none | cut | ground truth |", "|---|---|---|---|---|",
              "| object jump across the switch, median px | " + " | ".join(
                  "n/a" if test[t]["jump px"]["median"] is None else f"{test[t]['jump px']['median']:.2f}"
                  for t in (*TRANSITIONS, "ground truth")) + " |",
              "| normal per-frame step before it, median px | " + " | ".join(
                  "n/a" if test[t]["jump px"]["normal_step"] is None else f"{test[t]['jump px']['normal_step']:.2f}"
                  for t in (*TRANSITIONS, "ground truth")) + " |",
              f"| streams with a refused prompt (of {m['test_pairs']}) | " + " | ".join(
                  str(test[t]["refused prompts"]) for t in (*TRANSITIONS, "ground truth")) + " |", ""]
    if result.get("validation"):
        lines += [f"## Validation set ({m['validation_pairs']} switches, recache; training combinations, template and "
                  "user sentences; used for tuning)", ""]
        lines += table(result["validation"], ["recache"])
        lines.append("")
    if result.get("drift"):
        lines += [f"## Drift: one {m['drift_frames']}-frame stream, recache switch every {m['drift_every']} frames "
                  "through the test prompts", "", "| frames | scene | one intact object | weather | motion windows (n) |",
                  "|---|---|---|---|---|"]
        for b in result["drift"]:
            mot = "n/a" if b["motion"] is None else f"{100 * b['motion']:.0f} % ({b['motion_n']})"
            lines.append(f"| {b['frames'][0]}-{b['frames'][1]} | {100 * b['scene']:.0f} % | {100 * b['object']:.0f} % | "
                         f"{100 * b['weather']:.0f} % | {mot} |")
        lines.append("")
    lines += ["Contact sheet: two recache test streams, 12 frames before and 36 after the switch (row 2 starts "
              "at the switch):", "", "![recache](img/toy_switch_recache_0.png)", ""]
    return "\n".join(lines) + "\n"


def run_eval(weights, out_json: Path | None, out_md: Path | None, img_dir: Path | None, quick: bool = False,
             test_pairs: int = 64, validation_pairs: int = 32, pre: int = 24, post: int = 72,
             drift_frames: int = 10_000, drift_every: int = 240, seed: int = 0, sets=("validation", "test"),
             log=print) -> dict:
    t0 = time.time()
    if quick:
        test_pairs, validation_pairs, post, drift_frames = 4, 4, 48, 0
    result = {"meta": {"weights": str(weights or DEFAULT_WEIGHTS), "threads": torch.get_num_threads(),
                       "date": time.strftime("%Y-%m-%d"), "quick": quick, "test_pairs": test_pairs,
                       "validation_pairs": validation_pairs, "pre": pre, "post": post, "seed": seed,
                       "drift_frames": drift_frames, "drift_every": drift_every}}
    test_prompts = read_prompts(DATA / "test_prompts.tsv")
    sheets = None
    if "validation" in sets:
        log("validation set ...")
        v = evaluate_set(weights, switch_pairs(validation_prompts(seed + 7, 32), validation_pairs, seed + 1),
                         pre, post, seed + 100, ("recache",), controls=False, log=log)
        v.pop("_sheets", None)
        result["validation"] = v
    if "test" in sets:
        log("test set ...")
        pairs = switch_pairs(test_prompts, test_pairs, seed)
        result["test"] = evaluate_set(weights, pairs, pre, post, seed, log=log)
        sheets = result["test"].pop("_sheets", None)
        result["test_pairs"] = [[a.text, b.text] for a, b in pairs]
    if drift_frames:
        log(f"drift {drift_frames} frames ...")
        result["drift"], tail = drift(weights, test_prompts, drift_frames, drift_every, 1000, seed + 3)
    result["meta"]["wall_s"] = time.time() - t0
    if img_dir is not None and sheets is not None:
        from PIL import Image

        img_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(world.contact_sheet(np.concatenate(list(sheets)))).save(img_dir / "toy_switch_recache_0.png")
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    if out_md is not None and "test" in result:
        notes = out_md.read_text().partition(NOTES)[2] if out_md.is_file() else ""
        out_md.write_text(markdown(result) + (NOTES + notes if notes else ""))
    if "test" in result:
        print("\n".join(table(result["test"], list(TRANSITIONS) + [c for c in CONTROLS])), flush=True)
    log(f"done in {result['meta']['wall_s']:.0f} s")
    return result


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate the toy model (test set, controls, drift); writes docs/TOY_EVAL.md")
    p.add_argument("model", choices=["toy"])
    p.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    p.add_argument("--quick", action="store_true", help="4 switches per set, no drift (CI smoke run)")
    p.add_argument("--set", choices=["both", "validation", "test"], default="both")
    p.add_argument("--test-pairs", type=int, default=64, help="switches per transition on the test set")
    p.add_argument("--validation-pairs", type=int, default=32)
    p.add_argument("--drift-frames", type=int, default=10_000, help="0 skips the drift stream")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a shared machine)")
    p.add_argument("--json", default="docs/toy_eval.json")
    p.add_argument("--md", default="docs/TOY_EVAL.md", help="written only when the test set runs")
    p.add_argument("--img-dir", default="docs/img")
    p.add_argument("--exposure", type=int, default=0, metavar="N",
                   help="instead: N spawn streams teacher-forced vs free-running (toylab.exposure)")
    p.add_argument("--exposure-json", default="docs/toy_exposure.json")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.exposure < 0:
        raise SystemExit(f"longlive eval toy: --exposure is a number of streams, got {args.exposure}")
    if args.exposure:
        from toylab import exposure

        result = exposure.exposure(_pipe(args.weights, args.exposure), args.exposure, seed=args.seed)
        Path(args.exposure_json).write_text(json.dumps({"weights": str(args.weights or DEFAULT_WEIGHTS),
                                                        "date": time.strftime("%Y-%m-%d"), **result}, indent=1) + "\n")
        print("\n".join(exposure.table(result)))
        return 0
    sets = ("validation", "test") if args.set == "both" else (args.set,)
    run_eval(args.weights, Path(args.json), Path(args.md), Path(args.img_dir), args.quick, args.test_pairs,
             args.validation_pairs, drift_frames=args.drift_frames, seed=args.seed, sets=sets,
             log=lambda s: print(s, flush=True))
    return 0

