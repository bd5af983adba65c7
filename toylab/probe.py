"""Attribute probe: reads a toy-world frame back into attributes, for scoring generated video.

The probe knows the world's palettes and shapes but nothing of the scene that produced a
frame, so it applies equally to ground truth and to model output. It is built to survive what
a generator does to pixels (noise, blur, slightly off colours) and the weather particles:

* sky and ground: the per-row *median* colour profile is matched to each palette gradient;
  medians ignore the object (under a third of any row) and sparse particles;
* object: pixels far from their row's median, cleaned by a 3x3 morphological opening that
  erases 1-2 px particles and stars; the world wraps in x, so the mask is rolled to make the
  object contiguous before measuring it;
* colour: median of the mask's core (rim and antialiased edge excluded), nearest palette entry;
* shape: best IoU against each shape's template fitted to the observed centroid and area,
  which makes it insensitive to a mask that is a pixel too small or too big;
* objects: blobs of at least MIN_AREA px, connected on the torus; the frame shows one *intact*
  object only if there is exactly one blob and it fits a shape template (IoU >= INTACT_IOU, area
  within INTACT_AREA of that shape's): a doubled, smeared or bar-shaped object is not one;
* weather: particles are small bright marks on a smooth background: pixels brighter than their
  row's median (by PARTICLE_RISE, and by NOISE_MULTIPLE times the row's median deviation, so noise
  is not snow), grouped into 8-connected marks; only marks of at most PARTICLE_MAX_AREA px and
  PARTICLE_MAX_ROWS rows away from the object and the night stars count (a smear or a patch-grid
  texture is not particles). Fewer than MIN_PARTICLES -> clear; rain streaks span 4 rows,
  snowflakes at most 2, so the share of marks 3+ rows tall tells rain from snow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toylab import world

THRESHOLD = 40.0  # RGB distance from the row median that marks an object pixel
MIN_AREA = 40  # px; the smallest object covers ~180, so a smaller blob is not an object
SAME_COLOUR = 60.0  # RGB distance from the object's shades (k * colour) that still counts as it
BLOB_RADIUS = 14  # px kept around the mask's median; every shape fits inside it
INTACT_IOU = 0.6  # template fit of one intact object (ground truth: >= 0.8)
INTACT_AREA = (0.6, 1.6)  # area / the fitted shape's area for one intact object
PARTICLE_RISE = 20.0  # brightness above the row median that marks a particle pixel
NOISE_MULTIPLE = 6.0  # ... and above this many times the row's median absolute deviation
PARTICLE_MAX_AREA, PARTICLE_MAX_ROWS = 6, 5  # a rain streak is 4 px over 4 rows, a flake 1-4 px
MIN_PARTICLES = 4  # marks in a frame that mean it rains or snows (the world draws 36 / 44)
RAIN_TALL = 0.3  # share of marks spanning 3+ rows: rain above it
BOUNCE_MIN_RISE = 2.0  # px of vertical travel in a track that means bouncing
ROLL_MIN_SPEED = 0.5  # px / frame of horizontal travel that means rolling

_YY, _XX = np.mgrid[0:world.SIZE, 0:world.SIZE].astype(np.float32)
_COLOURS = np.array([world.COLOUR_RGB[c] for c in world.COLOURS], np.float32)
_SKY_ROWS = np.stack([world.sky_rows(s) for s in world.SKIES])  # [4, 44, 3]
_GROUND_ROWS = np.stack([world.ground_rows(g) for g in world.GROUNDS])  # [4, 20, 3]
_SHAPE_AREA = {shape: float((world.shape_depth(shape, _XX - 32, _YY - 32) > 0).sum())
               for shape in world.SHAPES}


@dataclass(frozen=True)
class ProbeResult:
    """What the probe read from one frame; object fields are None when `present` is False.

    (x, y) is the object's area centroid in pixels, x in [0, 64) on the wrapped world.
    """

    sky: str
    ground: str
    present: bool
    colour: str | None
    shape: str | None
    x: float | None
    y: float | None
    area: int
    objects: int = 0  # blobs of at least MIN_AREA px
    intact: bool = False  # exactly one blob, fitting a shape template
    fit: float = 0.0  # IoU of the best shape template
    weather: str = "clear"


def _nearest_profile(profile: np.ndarray, palettes: np.ndarray, names: tuple[str, ...]) -> str:
    distance = np.linalg.norm(palettes - profile[None], axis=-1).mean(axis=1)
    return names[int(np.argmin(distance))]


def _erode(mask: np.ndarray, outside: bool = False) -> np.ndarray:
    """3x3 erosion (separable); x wraps like the world, rows beyond the edges read `outside`."""
    across = mask & np.roll(mask, 1, axis=1) & np.roll(mask, -1, axis=1)
    padded = np.pad(across, ((1, 1), (0, 0)), constant_values=outside)
    return padded[:-2] & padded[1:-1] & padded[2:]


def _dilate(mask: np.ndarray) -> np.ndarray:
    return ~_erode(~mask, outside=True)


def _components(mask: np.ndarray, diagonal: bool = False) -> tuple[np.ndarray, int]:
    """4-connected (8 with `diagonal`) component labels of a mask on the x-torus (0 = background)
    and their count."""
    big = mask.size + 1
    lab = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), big)
    while True:
        up, down = np.vstack([lab[:1], lab[:-1]]), np.vstack([lab[1:], lab[-1:]])
        neighbours = [lab, up, down, np.roll(lab, 1, 1), np.roll(lab, -1, 1)]
        if diagonal:
            neighbours += [np.roll(r, k, 1) for r in (up, down) for k in (1, -1)]
        nb = np.where(mask, np.minimum.reduce(neighbours), big)
        if np.array_equal(nb, lab):
            break
        lab = nb
    ids, lab = np.unique(np.where(mask, lab, 0), return_inverse=True)
    return lab.reshape(mask.shape), len(ids) - (1 if ids[0] == 0 else 0)


_STAR_MASK = np.zeros((world.SIZE, world.SIZE), bool)
_STAR_MASK[world.stars()[0], world.stars()[1]] = True
_STAR_MASK = _dilate(_STAR_MASK)  # a generator blurs a star into its neighbours


def _weather(img: np.ndarray, row_median: np.ndarray, keep_out: np.ndarray, night: bool) -> str:
    """clear / rain / snow from the particle marks of one frame (see the module docstring). Marks
    are measured before the object and the stars are cut out, and any touching them is dropped:
    cutting first would chop a long smear into short, rain-like pieces."""
    rise = (img - row_median[:, None]).mean(-1)
    spread = np.median(np.abs(rise), axis=1, keepdims=True)
    bright = rise > np.maximum(PARTICLE_RISE, NOISE_MULTIPLE * spread)
    if bright.sum() < MIN_PARTICLES:
        return "clear"
    labels, n = _components(bright, diagonal=True)
    excluded = keep_out | _STAR_MASK if night else keep_out
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    touches = np.bincount(labels[excluded], minlength=n + 1)[1:] > 0
    rows = np.broadcast_to(np.arange(world.SIZE)[:, None], labels.shape)
    top, bottom = np.full(n + 1, world.SIZE), np.full(n + 1, -1)
    np.minimum.at(top, labels, rows)
    np.maximum.at(bottom, labels, rows)
    span = (bottom - top + 1)[1:]
    marks = (area <= PARTICLE_MAX_AREA) & (span <= PARTICLE_MAX_ROWS) & ~touches
    if marks.sum() < MIN_PARTICLES:
        return "clear"
    return "rain" if (span[marks] >= 3).mean() > RAIN_TALL else "snow"


def probe_frame(frame: np.ndarray) -> ProbeResult:
    """Attributes of one uint8 frame [64, 64, 3] (use world.to_uint8 on model output)."""
    assert frame.shape == (world.SIZE, world.SIZE, 3) and frame.dtype == np.uint8, frame.shape
    img = frame.astype(np.float32)
    row_median = np.median(img, axis=1)  # [64, 3]
    sky = _nearest_profile(row_median[:world.HORIZON], _SKY_ROWS, world.SKIES)
    ground = _nearest_profile(row_median[world.HORIZON:], _GROUND_ROWS, world.GROUNDS)

    far = np.linalg.norm(img - row_median[:, None], axis=-1) > THRESHOLD
    mask = _dilate(_erode(far))
    weather = _weather(img, row_median, _dilate(_dilate(mask)), sky == "night")
    labels, n = _components(mask) if mask.sum() >= MIN_AREA else (None, 0)
    sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0, int)
    objects = int((sizes >= MIN_AREA).sum())
    if not objects:
        return ProbeResult(sky, ground, False, None, None, None, None, int(mask.sum()), weather=weather)
    mask = labels == 1 + int(np.argmax(sizes))  # the largest blob is the object

    # Roll so the object does not straddle the wrap: start at the first empty column.
    empty = ~mask.any(axis=0)
    shift = int(np.argmax(empty)) if empty.any() else 0
    mask, img = np.roll(mask, -shift, axis=1), np.roll(img, -shift, axis=1)
    ys, xs = np.nonzero(mask)
    near = (np.abs(ys - np.median(ys)) <= BLOB_RADIUS) & (np.abs(xs - np.median(xs)) <= BLOB_RADIUS)
    mask = np.zeros_like(mask)
    mask[ys[near], xs[near]] = True
    if mask.sum() < MIN_AREA:
        return ProbeResult(sky, ground, False, None, None, None, None, int(mask.sum()), objects, weather=weather)

    core = _erode(mask)
    rgb = np.median(img[core] if core.sum() >= 10 else img[mask], axis=0)
    colour = world.COLOURS[int(np.argmin(np.linalg.norm(_COLOURS - rgb, axis=1)))]
    # Drop particles stuck to the object's outline: they are off its shading line k * rgb.
    k = np.clip(img @ rgb / (rgb @ rgb + 1e-6), 0.5, 1.2)
    same = mask & (np.linalg.norm(img - k[..., None] * rgb, axis=-1) < SAME_COLOUR)
    if same.sum() >= mask.sum() / 2:
        mask = same
    area = int(mask.sum())
    ys, xs = np.nonzero(mask)
    cy, cx = float(ys.mean()), float(xs.mean())

    best_iou, shape = -1.0, world.SHAPES[0]
    for name in world.SHAPES:
        scale = float(np.sqrt(area / _SHAPE_AREA[name]))
        template = world.shape_depth(name, _XX - cx, _YY - cy, scale) > 0
        iou = (template & mask).sum() / (template | mask).sum()
        if iou > best_iou:
            best_iou, shape = iou, name
    ratio = area / _SHAPE_AREA[shape]
    intact = objects == 1 and best_iou >= INTACT_IOU and INTACT_AREA[0] <= ratio <= INTACT_AREA[1]
    return ProbeResult(sky, ground, True, colour, shape, (cx + shift) % world.SIZE, cy, area, objects,
                       bool(intact), float(best_iou), weather)


def probe_frames(frames: np.ndarray) -> list[ProbeResult]:
    """probe_frame over [T, 64, 64, 3] uint8."""
    return [probe_frame(f) for f in frames]


def track(results: list[ProbeResult]) -> np.ndarray:
    """[T, 2] centroids (x, y) from probe results, NaN where no object was seen."""
    return np.array([(r.x, r.y) if r.present else (np.nan, np.nan) for r in results], np.float32)


def motion_from_track(positions: np.ndarray) -> str | None:
    """Motion ("left", "right", "bounce", "rest") from [T, 2] centroids of consecutive frames,
    NaN rows for frames without an object; None with fewer than 3 sightings.

    Any vertical travel beyond BOUNCE_MIN_RISE is a bounce (rolling objects stay on the
    floor); otherwise the median per-frame horizontal step, unwrapped on the torus, decides.
    Use windows of 8 frames or more: a shorter one around a bounce's apex barely rises.
    """
    seen = np.flatnonzero(~np.isnan(positions[:, 0]))
    if seen.size < 3:
        return None
    xy = positions[seen].astype(np.float64)
    if np.ptp(xy[:, 1]) > BOUNCE_MIN_RISE:
        return "bounce"
    half = world.SIZE / 2
    step = ((np.diff(xy[:, 0]) + half) % world.SIZE - half) / np.diff(seen)
    speed = float(np.median(step))
    if abs(speed) < ROLL_MIN_SPEED:
        return "rest"
    return "left" if speed < 0 else "right"
