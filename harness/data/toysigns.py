"""toysigns: synthetic traffic-sign classification images in COCO format (embedded default).

Layout written by :func:`generate_toysigns` into ``out_dir`` (as toydrive's)::

    images/train/000001.png ...   images/val/000001.png ...
    train.json  val.json          COCO; ``file_name`` is relative to ``out_dir/images``
    done.json                     marker: generator version + parameters

Every image shows one sign and has exactly one annotation: the sign's amodal ``bbox``
(clipped to the image), its ``category_id`` (the image's class), ``area``,
``iscrowd: 0`` and ``occluded`` (fraction of the sign hidden by foliage or a pole).
Every image carries ``attributes.lighting`` (``day`` or ``dusk``).

Class frequencies are long-tailed (the most frequent class has ``IMBALANCE`` times the
images of the rarest); each split holds exactly :func:`class_counts` images per class,
in a seeded random order. Signs are drawn 4x supersampled with PIL, placed with a random
affine (scale, position, rotation, squash), over random clutter, sometimes occluded,
then downsampled and photometrically jittered. Randomness comes from
``np.random.SeedSequence([seed, split, index])`` (never the global RNG), so the same
parameters give byte-identical json and identical pixels (with the same numpy and
Pillow versions; ``done.json`` records them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from robustness_harness.data.generated import GeneratedDataset

#: Bump whenever the generated json or pixels change for the same parameters.
GENERATOR_VERSION = "1"

#: Class names; category ids are 1..12 in this order.
TOYSIGNS_CLASSES = (
    "stop",
    "yield",
    "no_entry",
    "speed_30",
    "speed_50",
    "speed_80",
    "caution",
    "crossroads",
    "ahead_only",
    "turn_left",
    "turn_right",
    "priority_road",
)

TOYSIGNS = GeneratedDataset(
    name="toysigns",
    version=GENERATOR_VERSION,
    categories=[
        {"id": i + 1, "name": n, "supercategory": "sign"} for i, n in enumerate(TOYSIGNS_CLASSES)
    ],
    min_image_size=16,
)

#: Classes from the most to the least frequent; frequencies fall geometrically.
FREQUENCY_ORDER = (
    "speed_50",
    "speed_30",
    "priority_road",
    "yield",
    "stop",
    "ahead_only",
    "no_entry",
    "turn_right",
    "caution",
    "speed_80",
    "turn_left",
    "crossroads",
)
IMBALANCE = 8.0  # images of the most frequent class / images of the rarest
DUSK_PROBABILITY = 0.3
OCCLUSION_PROBABILITY = 0.3
SUPERSAMPLE = 4  # signs and clutter are drawn at 4x the image size, then downsampled

RGB = tuple[int, int, int]
Point = tuple[float, float]


def class_weights() -> dict[str, float]:
    """Relative frequency of each class (sums to 1), geometric in ``FREQUENCY_ORDER``."""
    k = len(FREQUENCY_ORDER)
    raw = {name: IMBALANCE ** (-i / (k - 1)) for i, name in enumerate(FREQUENCY_ORDER)}
    total = sum(raw.values())
    return {name: raw[name] / total for name in TOYSIGNS_CLASSES}


def class_counts(n: int) -> dict[str, int]:
    """Images per class in a split of ``n`` images (largest-remainder rounding)."""
    weights = class_weights()
    exact = np.array([weights[c] * n for c in TOYSIGNS_CLASSES])
    counts = np.floor(exact).astype(int)
    by_remainder = np.argsort(-(exact - counts), kind="stable")
    counts[by_remainder[: n - int(counts.sum())]] += 1
    return {c: int(k) for c, k in zip(TOYSIGNS_CLASSES, counts, strict=True)}


# -- sign faces: one function per class, drawn on a transparent square -------------------

RED: RGB = (200, 25, 30)
WHITE: RGB = (245, 245, 240)
BLACK: RGB = (25, 25, 25)
BLUE: RGB = (25, 75, 170)
YELLOW: RGB = (245, 195, 30)


@dataclass
class _Face:
    """A drawing surface for one sign face: centre ``c``, radius ``r``, faded palette."""

    draw: ImageDraw.ImageDraw
    c: float
    r: float
    fade: float  # 0: fresh colours, 1: washed out

    def col(self, rgb: RGB) -> RGB:
        """``rgb`` washed out towards a light grey by ``fade``."""
        target = sum(rgb) / 3 + 40
        r, g, b = (round(v + (target - v) * self.fade * 0.5) for v in rgb)
        return (r, g, b)

    def at(self, fx: float, fy: float) -> Point:
        """A point given in units of the radius from the centre (y down)."""
        return (self.c + fx * self.r, self.c + fy * self.r)

    def disc(self, radius: float, fill: RGB) -> None:
        x0, y0 = self.at(-radius, -radius)
        x1, y1 = self.at(radius, radius)
        self.draw.ellipse((x0, y0, x1, y1), fill=self.col(fill))

    def poly(self, points: list[Point], fill: RGB, scale: float = 1.0) -> None:
        self.draw.polygon([self.at(x * scale, y * scale) for x, y in points], fill=self.col(fill))

    def stroke(self, points: list[Point], fill: RGB, width: float) -> None:
        pts = [self.at(x, y) for x, y in points]
        w = max(1, round(width * self.r))
        self.draw.line(pts, fill=self.col(fill), width=w, joint="curve")
        for x, y in (pts[0], pts[-1]):  # round caps
            self.draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=self.col(fill))


def _regular(n: int, phase: float) -> list[Point]:
    return [
        (math.cos(phase + 2 * math.pi * k / n), math.sin(phase + 2 * math.pi * k / n))
        for k in range(n)
    ]


OCTAGON = _regular(8, math.pi / 8)
TRIANGLE_UP = [(0.0, -1.0), (0.95, 0.72), (-0.95, 0.72)]
TRIANGLE_DOWN = [(0.0, 1.0), (0.95, -0.72), (-0.95, -0.72)]
DIAMOND = _regular(4, 0.0)

# seven-segment digits: segments a..g as strokes in a unit cell (x 0..1, y 0..1)
SEGMENTS = {
    "a": ((0, 0), (1, 0)),
    "b": ((1, 0), (1, 0.5)),
    "c": ((1, 0.5), (1, 1)),
    "d": ((0, 1), (1, 1)),
    "e": ((0, 0.5), (0, 1)),
    "f": ((0, 0), (0, 0.5)),
    "g": ((0, 0.5), (1, 0.5)),
}
DIGITS = {"0": "abcdef", "3": "abcdg", "5": "acdfg", "8": "abcdefg"}


def _digits(f: _Face, text: str) -> None:
    """Black seven-segment digits centred on the face."""
    w, h, gap, lw = 0.28, 0.62, 0.16, 0.13
    left = -(len(text) * w + (len(text) - 1) * gap) / 2
    for i, ch in enumerate(text):
        x0 = left + i * (w + gap)
        for seg in DIGITS[ch]:
            (ax, ay), (bx, by) = SEGMENTS[seg]
            f.stroke([(x0 + ax * w, -h / 2 + ay * h), (x0 + bx * w, -h / 2 + by * h)], BLACK, lw)


def _speed(text: str) -> Callable[[_Face], None]:
    def draw(f: _Face) -> None:
        f.disc(1.0, RED)
        f.disc(0.76, WHITE)
        _digits(f, text)

    draw.__doc__ = f"Speed limit {text}: red ring, white disc, black digits."
    return draw


def draw_stop(f: _Face) -> None:
    """Red octagon with a white rim and a white word-like band."""
    f.poly(OCTAGON, WHITE)
    f.poly(OCTAGON, RED, 0.88)
    for k in range(4):  # four blocky letter-like glyphs
        x = -0.6 + k * 0.32
        f.stroke([(x, -0.2), (x + 0.16, -0.2), (x + 0.16, 0.2), (x, 0.2)], WHITE, 0.09)


def draw_yield(f: _Face) -> None:
    """Point-down triangle: red border, white inside."""
    f.poly(TRIANGLE_DOWN, RED)
    f.poly(TRIANGLE_DOWN, WHITE, 0.62)


def draw_no_entry(f: _Face) -> None:
    """Red disc with a white horizontal bar."""
    f.disc(1.0, RED)
    f.poly([(-0.7, -0.17), (0.7, -0.17), (0.7, 0.17), (-0.7, 0.17)], WHITE)


def _warning(f: _Face) -> None:
    f.poly(TRIANGLE_UP, RED)
    f.poly(TRIANGLE_UP, WHITE, 0.64)


def draw_caution(f: _Face) -> None:
    """Warning triangle with an exclamation mark."""
    _warning(f)
    f.stroke([(0.0, -0.3), (0.0, 0.12)], BLACK, 0.13)
    f.stroke([(0.0, 0.3), (0.0, 0.31)], BLACK, 0.14)


def draw_crossroads(f: _Face) -> None:
    """Warning triangle with a cross."""
    _warning(f)
    f.stroke([(0.0, -0.3), (0.0, 0.36)], BLACK, 0.12)
    f.stroke([(-0.3, 0.05), (0.3, 0.05)], BLACK, 0.12)


def draw_ahead_only(f: _Face) -> None:
    """Blue disc, white arrow up."""
    f.disc(1.0, BLUE)
    f.stroke([(0.0, 0.55), (0.0, -0.2)], WHITE, 0.2)
    f.poly([(0.0, -0.62), (0.36, -0.16), (-0.36, -0.16)], WHITE)


def draw_turn_left(f: _Face) -> None:
    """Blue disc, white arrow bending left."""
    f.disc(1.0, BLUE)
    f.stroke([(0.2, 0.6), (0.2, -0.05), (-0.2, -0.05)], WHITE, 0.2)
    f.poly([(-0.62, -0.05), (-0.18, -0.4), (-0.18, 0.3)], WHITE)


def draw_turn_right(f: _Face) -> None:
    """Blue disc, white arrow bending right."""
    f.disc(1.0, BLUE)
    f.stroke([(-0.2, 0.6), (-0.2, -0.05), (0.2, -0.05)], WHITE, 0.2)
    f.poly([(0.62, -0.05), (0.18, -0.4), (0.18, 0.3)], WHITE)


def draw_priority_road(f: _Face) -> None:
    """Yellow diamond with a white rim."""
    f.poly(DIAMOND, WHITE)
    f.poly(DIAMOND, (40, 40, 40), 0.86)
    f.poly(DIAMOND, YELLOW, 0.74)


SIGNS: dict[str, Callable[[_Face], None]] = {
    "stop": draw_stop,
    "yield": draw_yield,
    "no_entry": draw_no_entry,
    "speed_30": _speed("30"),
    "speed_50": _speed("50"),
    "speed_80": _speed("80"),
    "caution": draw_caution,
    "crossroads": draw_crossroads,
    "ahead_only": draw_ahead_only,
    "turn_left": draw_turn_left,
    "turn_right": draw_turn_right,
    "priority_road": draw_priority_road,
}


# -- one image ---------------------------------------------------------------------------

# fmt: off
BACKDROPS: tuple[tuple[RGB, RGB], ...] = (
    ((120, 160, 210), (200, 215, 230)),  # sky
    ((150, 150, 155), (200, 200, 200)),  # overcast
    ((50, 90, 40), (110, 140, 70)),      # foliage
    ((120, 80, 60), (170, 130, 100)),    # brick
    ((90, 90, 95), (140, 140, 140)),     # concrete / asphalt
)
CLUTTER: tuple[RGB, ...] = (
    (60, 60, 60), (140, 140, 140), (210, 210, 205), (70, 110, 50), (40, 70, 30),
    (130, 90, 60), (180, 150, 110), (90, 110, 140), (190, 60, 50), (50, 80, 160),
    (220, 190, 60), (30, 30, 35),
)
# fmt: on
POLE: RGB = (120, 120, 125)
LEAVES: tuple[RGB, ...] = ((40, 80, 30), (60, 105, 40), (30, 60, 25), (85, 120, 50))


@dataclass(frozen=True)
class SignImage:
    """One generated image: uint8 HWC pixels, the sign's xywh box and its attributes."""

    pixels: np.ndarray
    bbox: tuple[float, float, float, float]
    lighting: str
    occluded: float


def _jitter(rng: np.random.Generator, rgb: RGB, amount: int) -> RGB:
    shifted = np.clip(np.asarray(rgb) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return (int(shifted[0]), int(shifted[1]), int(shifted[2]))


def _smooth_noise(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    n = size // cell + 2
    coarse = rng.normal(0.0, 1.0, (n, n)).astype(np.float32)
    up = Image.fromarray(coarse, mode="F").resize((n * cell, n * cell), Image.Resampling.BILINEAR)
    return np.asarray(up)[:size, :size]


def _background(rng: np.random.Generator, s: int) -> Image.Image:
    """A gradient backdrop with random rectangles, blobs and lines."""
    top, bottom = BACKDROPS[int(rng.integers(len(BACKDROPS)))]
    top, bottom = _jitter(rng, top, 25), _jitter(rng, bottom, 25)
    t = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None, None]
    grad = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    grad = np.broadcast_to(grad, (s, s, 3)) + _smooth_noise(rng, s, 16)[..., None] * 12
    image = Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 10))):
        colour = _jitter(rng, CLUTTER[int(rng.integers(len(CLUTTER)))], 30)
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * s
        w, h = rng.uniform(0.1, 0.6, 2) * s
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.line((x0, y0, x0 + w, y0 + h), fill=colour, width=int(rng.integers(2, 10)))
    return image


def _affine(rng: np.random.Generator, s: int) -> tuple[float, ...]:
    """PIL affine coefficients (output -> input pixel) placing the canonical sign: a
    random scale, horizontal squash (viewing angle), rotation and shift."""
    scale = rng.uniform(0.55, 0.95)
    squash = rng.uniform(0.75, 1.0)
    angle = math.radians(rng.uniform(-14.0, 14.0))
    shift = rng.uniform(-0.14, 0.14, 2) * s
    ca, sa = math.cos(angle), math.sin(angle)
    forward = scale * np.array([[ca, -sa], [sa, ca]]) @ np.diag([squash, 1.0])
    inverse = np.linalg.inv(forward)
    centre = np.array([s / 2, s / 2])
    offset = centre - inverse @ (centre + shift)
    (a, b), (d, e) = inverse
    return (a, b, offset[0], d, e, offset[1])


def _occluder(rng: np.random.Generator, s: int, box: tuple[int, int, int, int]) -> Image.Image:
    """An RGBA layer with foliage or a pole crossing the sign's box ``box``."""
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if rng.random() < 0.6:  # foliage entering from one side
        side = int(rng.integers(4))
        depth = rng.uniform(0.15, 0.45)
        for _ in range(int(rng.integers(4, 9))):
            u, v = rng.uniform(0, 1), rng.uniform(-0.2, depth)
            cx, cy = [
                (x0 + u * w, y0 + v * h),
                (x0 + u * w, y1 - v * h),
                (x0 + v * w, y0 + u * h),
                (x1 - v * w, y0 + u * h),
            ][side]
            r = rng.uniform(0.08, 0.2) * w
            colour = _jitter(rng, LEAVES[int(rng.integers(len(LEAVES)))], 15)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*colour, 255))
    else:  # a post or branch across the sign
        x = x0 + rng.uniform(0.0, 1.0) * w
        tilt = rng.uniform(-0.3, 0.3) * h
        width = int(rng.uniform(0.08, 0.2) * w) + 1
        colour = _jitter(rng, CLUTTER[int(rng.integers(len(CLUTTER)))], 20)
        draw.line((x - tilt, 0, x + tilt, s), fill=(*colour, 255), width=width)
    return layer


def _sign_layer(rng: np.random.Generator, kind: str, s: int) -> tuple[Image.Image, np.ndarray]:
    """The sign drawn, faded and placed on a transparent ``s`` x ``s`` layer, and its
    opaque-pixel mask."""
    face = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    SIGNS[kind](_Face(ImageDraw.Draw(face), s / 2, s * 0.48, rng.uniform(0.0, 0.6)))
    coeffs = _affine(rng, s)
    sign = face.transform((s, s), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    return sign, np.asarray(sign.getchannel("A")) > 127


def _draw_post(canvas: Image.Image, box: tuple[int, int, int, int]) -> None:
    """A grey post from the bottom of the sign down out of the frame."""
    cx = (box[0] + box[2]) / 2
    half = max(2.0, 0.07 * (box[2] - box[0]))
    ImageDraw.Draw(canvas).rectangle((cx - half, box[3] - 4, cx + half, canvas.height), fill=POLE)


def sign_image(rng: np.random.Generator, kind: str, size: int = 32) -> SignImage:
    """Draw one ``size`` x ``size`` image of a ``kind`` sign (see ``TOYSIGNS_CLASSES``)."""
    s = size * SUPERSAMPLE
    sign, mask = _sign_layer(rng, kind, s)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    canvas = _background(rng, s).convert("RGBA")
    if rng.random() < 0.6:
        _draw_post(canvas, box)
    canvas.alpha_composite(sign)
    occluded = 0.0
    if rng.random() < OCCLUSION_PROBABILITY:
        layer = _occluder(rng, s, box)
        hidden = (np.asarray(layer.getchannel("A")) > 127) & mask
        occluded = float(hidden.sum() / max(1, mask.sum()))
        canvas.alpha_composite(layer)

    small = canvas.convert("RGB").resize((size, size), Image.Resampling.BOX)
    if rng.random() < 0.25:
        small = small.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    dusk = rng.random() < DUSK_PROBABILITY
    pixels = _lighting(rng, np.asarray(small, dtype=np.float32), dusk)
    x0, y0, x1, y1 = (v / SUPERSAMPLE for v in box)
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(size, x1), min(size, y1)
    bbox = (x0, y0, x1 - x0, y1 - y0)
    return SignImage(pixels, bbox, "dusk" if dusk else "day", round(occluded, 3))


def _lighting(rng: np.random.Generator, img: np.ndarray, dusk: bool) -> np.ndarray:
    """Day: brightness/contrast/colour jitter; dusk: dark, tinted, noisy."""
    if dusk:
        gain = rng.uniform(0.3, 0.55) * np.array([1.1, 0.9, 1.0]) * rng.uniform(0.85, 1.15, 3)
        noise = rng.uniform(4.0, 10.0)
    else:
        gain = rng.uniform(0.7, 1.25) * rng.uniform(0.88, 1.12, 3)
        noise = rng.uniform(1.0, 5.0)
    contrast = rng.uniform(0.7, 1.1)
    mean = img.mean()
    img = (mean + (img - mean) * contrast) * gain.astype(np.float32)
    img += rng.normal(0.0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# -- writing a dataset ------------------------------------------------------------------


def toysigns_paths(out_dir: Path) -> dict[str, Path]:
    """The files of a toysigns dataset in ``out_dir``: each split's json and ``images``."""
    return TOYSIGNS.paths(out_dir)


def generate_toysigns(
    out_dir: Path,
    *,
    seed: int = 0,
    n_train: int = 6000,
    n_val: int = 1000,
    image_size: int = 32,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Generate toysigns into ``out_dir`` (atomically) unless it is already there.

    Returns ``{"train": json, "val": json, "images": dir}``; ``file_name`` in the json
    files is relative to ``images``. Concurrent callers (xdist workers) generate once.
    """
    params = TOYSIGNS.params(seed, n_train, n_val, image_size)
    return TOYSIGNS.generate(out_dir, params, _write_split, progress)


def split_labels(seed: int, split_index: int, n: int) -> list[str]:
    """The class of every image of a split: exact ``class_counts(n)``, seeded order."""
    labels = [c for c, k in class_counts(n).items() for _ in range(k)]
    order = np.random.default_rng(np.random.SeedSequence([seed, split_index])).permutation(n)
    return [labels[i] for i in order]


def _write_split(
    root: Path,
    split: str,
    split_index: int,
    params: dict[str, int],
    progress: Callable[[str], None] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    n = params[f"n_{split}"]
    images, annotations = [], []
    for index, kind in enumerate(split_labels(params["seed"], split_index, n)):
        image_id = index + 1
        rng = np.random.default_rng(np.random.SeedSequence([params["seed"], split_index, index]))
        sample = sign_image(rng, kind, params["image_size"])
        file_name = f"{split}/{image_id:06d}.png"
        Image.fromarray(sample.pixels).save(root / "images" / file_name, compress_level=1)
        images.append(_image_entry(image_id, file_name, params["image_size"], sample))
        annotations.append(_annotation_entry(image_id, kind, sample))
        if progress is not None and (index + 1) % 1000 == 0:
            progress(f"toysigns {split}: {index + 1}/{n} images")
    return images, annotations


def _image_entry(image_id: int, file_name: str, size: int, sample: SignImage) -> dict[str, Any]:
    return {
        "id": image_id,
        "file_name": file_name,
        "width": size,
        "height": size,
        "attributes": {"lighting": sample.lighting},
    }


def _annotation_entry(image_id: int, kind: str, sample: SignImage) -> dict[str, Any]:
    x, y, w, h = (round(v, 2) for v in sample.bbox)
    return {
        "id": image_id,
        "image_id": image_id,
        "category_id": TOYSIGNS_CLASSES.index(kind) + 1,
        "bbox": [x, y, w, h],
        "area": round(w * h, 2),
        "iscrowd": 0,
        "occluded": sample.occluded,
    }
