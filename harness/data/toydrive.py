"""toydrive: procedurally generated street scenes in COCO format (the embedded default).

Layout written by :func:`generate_toydrive` into ``out_dir``::

    images/train/000001.png ...   images/val/000001.png ...
    train.json  val.json          COCO; ``file_name`` is relative to ``out_dir/images``
    done.json                     marker: generator version + parameters

Each split numbers its images from 1. Every image carries ``attributes.timeofday``
(``day`` or ``night``); every annotation has an amodal ``bbox`` clipped to the image,
``area`` (box area), ``iscrowd: 0``, ``occluded`` (fraction of the object's in-frame
pixels hidden by nearer things) and ``truncated`` (fraction outside the frame). A
bicycle's rider is annotated as a separate ``person`` (the COCO convention).

Scenes are drawn with PIL from ``np.random.SeedSequence([seed, split, index])`` (never
the global RNG), so the same parameters give byte-identical json and identical pixels
(with the same numpy and Pillow versions; ``done.json`` records them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from robustness_harness.data.generated import GeneratedDataset

#: Bump whenever the generated json or pixels change for the same parameters.
GENERATOR_VERSION = "3"

#: Class names; category ids are 1..6 in this order.
TOYDRIVE_CLASSES = ("car", "person", "bicycle", "truck", "bus", "train")

#: Sampling weights of scene objects (riders add persons; drops change the rest).
CLASS_WEIGHTS = {
    "car": 0.47,
    "person": 0.20,
    "bicycle": 0.135,
    "truck": 0.10,
    "bus": 0.065,
    "train": 0.018,
}
NIGHT_PROBABILITY = 0.2
MAX_OBJECTS = 8  # per image, riders included
FAR_BIAS = 1.0  # depth s = lo + (hi - lo) * u ** FAR_BIAS; > 1 puts more objects far away
CLUSTER_PROBABILITY = 0.15  # an object is placed next to the previous one (occlusion)
CLUSTER_OFFSET = (0.5, 1.1)  # its centre offset, in half the sum of both widths
MAX_OCCLUDED = 0.8  # objects hidden more than this are drawn but not annotated
MIN_INSIDE = 0.3  # objects with less of their box inside the frame are not annotated

RGB = tuple[int, int, int]
Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


# -- drawing surface --------------------------------------------------------------------


@dataclass
class _Light:
    x: float
    y: float
    radius: float
    color: RGB
    strength: float


class _Canvas:
    """An RGB image plus an owner mask: each object paints its id into the mask, so
    tight boxes and occlusion come from the pixels actually drawn."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.image = Image.new("RGB", (size, size))
        self.draw = ImageDraw.Draw(self.image)
        self.mask = Image.new("L", (size, size), 0)
        self.mdraw = ImageDraw.Draw(self.mask)
        self.owner = 0
        self.extent = [math.inf, math.inf, -math.inf, -math.inf]
        self.lights: list[_Light] = []

    def begin(self, owner: int) -> None:
        """Start a new item: later shapes paint ``owner`` into the mask."""
        self.owner = owner
        self.extent = [math.inf, math.inf, -math.inf, -math.inf]

    def _box(self, a: Point, b: Point) -> tuple[int, int, int, int]:
        x0, x1 = sorted((a[0], b[0]))
        y0, y1 = sorted((a[1], b[1]))
        e = self.extent
        e[0], e[1], e[2], e[3] = min(e[0], x0), min(e[1], y0), max(e[2], x1), max(e[3], y1)
        ix0, iy0 = round(x0), round(y0)
        return ix0, iy0, max(ix0, round(x1) - 1), max(iy0, round(y1) - 1)

    def rect(self, a: Point, b: Point, fill: RGB, radius: float = 0.0) -> None:
        box = self._box(a, b)
        r = int(min(radius, (box[2] - box[0]) / 2, (box[3] - box[1]) / 2))
        if r >= 1:
            self.draw.rounded_rectangle(box, radius=r, fill=fill)
            self.mdraw.rounded_rectangle(box, radius=r, fill=self.owner)
        else:
            self.draw.rectangle(box, fill=fill)
            self.mdraw.rectangle(box, fill=self.owner)

    def ellipse(
        self,
        center: Point,
        rx: float,
        ry: float,
        fill: RGB | None,
        outline: RGB | None = None,
        width: int = 1,
    ) -> None:
        cx, cy = center
        box = self._box((cx - rx, cy - ry), (cx + rx, cy + ry))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:  # PIL drops tiny ellipses
            colour = fill if fill is not None else outline
            assert colour is not None
            self.draw.rectangle(box, fill=colour)
            self.mdraw.rectangle(box, fill=self.owner)
            return
        self.draw.ellipse(box, fill=fill, outline=outline, width=width)
        mfill = self.owner if fill is not None else None
        self.mdraw.ellipse(box, fill=mfill, outline=self.owner, width=width)

    def polygon(self, points: list[Point], fill: RGB) -> None:
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        self._box((min(xs), min(ys)), (max(xs), max(ys)))
        pts = [(round(x), round(y)) for x, y in points]
        self.draw.polygon(pts, fill=fill)
        self.mdraw.polygon(pts, fill=self.owner)

    def line(self, points: list[Point], fill: RGB, width: float = 1.0) -> None:
        w = max(1, round(width))
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        self._box((min(xs) - w / 2, min(ys) - w / 2), (max(xs) + w / 2, max(ys) + w / 2))
        pts = [(round(x), round(y)) for x, y in points]
        self.draw.line(pts, fill=fill, width=w)
        self.mdraw.line(pts, fill=self.owner, width=w)

    def light(self, at: Point, radius: float, color: RGB, strength: float = 1.0) -> None:
        """A light source, lit only at night (street lamps, head/tail lights, windows)."""
        self.lights.append(_Light(at[0], at[1], max(radius, 0.7), color, strength))


def _frame(box: Box, facing: int) -> Callable[[float, float], Point]:
    """Maps fractions of an object's box to pixels, mirrored when ``facing`` is -1."""
    x0, y0, x1, y1 = box

    def at(fx: float, fy: float) -> Point:
        fx = fx if facing > 0 else 1.0 - fx
        return (x0 + fx * (x1 - x0), y0 + fy * (y1 - y0))

    return at


def _vary(rng: np.random.Generator, rgb: RGB, amount: int = 18) -> RGB:
    jitter = rng.integers(-amount, amount + 1, size=3)
    return tuple(int(v) for v in np.clip(np.asarray(rgb) + jitter, 0, 255))  # type: ignore[return-value]


def _pick(rng: np.random.Generator, palette: tuple[RGB, ...], amount: int = 18) -> RGB:
    return _vary(rng, palette[int(rng.integers(len(palette)))], amount)


def _shade(rgb: RGB, factor: float) -> RGB:
    return tuple(int(min(255, v * factor)) for v in rgb)  # type: ignore[return-value]


# fmt: off
VEHICLE_COLORS: tuple[RGB, ...] = (
    (200, 30, 30), (30, 60, 160), (230, 230, 230), (160, 160, 165), (35, 35, 40),
    (220, 190, 40), (40, 120, 60), (120, 20, 30), (95, 95, 105), (210, 110, 30),
    (70, 140, 190),
)
BUS_COLORS: tuple[RGB, ...] = (
    (230, 180, 20), (200, 40, 40), (40, 90, 180), (235, 235, 235), (40, 140, 80),
)
TRAIN_COLORS: tuple[RGB, ...] = (
    (185, 185, 190), (190, 40, 40), (40, 70, 150), (230, 230, 225), (60, 120, 60),
)
SKIN: tuple[RGB, ...] = (
    (250, 215, 180), (225, 180, 135), (190, 140, 100), (140, 95, 60), (95, 62, 40),
)
# fmt: on
GLASS: RGB = (55, 70, 95)
TIRE: RGB = (25, 25, 28)
HEADLIGHT: RGB = (255, 240, 200)
TAILLIGHT: RGB = (255, 40, 30)


# -- objects: one function per class ----------------------------------------------------


def draw_car(c: _Canvas, rng: np.random.Generator, box: Box, facing: int) -> None:
    """Side view: body, cabin with two windows, two wheels, head and tail lights."""
    at = _frame(box, facing)
    h = box[3] - box[1]
    body = _pick(rng, VEHICLE_COLORS)
    roof_back, roof_front = rng.uniform(0.22, 0.34), rng.uniform(0.62, 0.74)
    belt = rng.uniform(0.40, 0.48)
    c.polygon(
        [at(0.14, belt), at(roof_back, 0.02), at(roof_front, 0.02), at(0.86, belt)],
        _shade(body, 0.9),
    )
    mid = (roof_back + roof_front) / 2
    c.polygon(
        [
            at(0.2, belt - 0.02),
            at(roof_back + 0.04, 0.1),
            at(mid - 0.02, 0.1),
            at(mid - 0.02, belt),
        ],
        _vary(rng, GLASS, 10),
    )
    c.polygon(
        [
            at(mid + 0.02, belt),
            at(mid + 0.02, 0.1),
            at(roof_front - 0.03, 0.1),
            at(0.8, belt - 0.02),
        ],
        _vary(rng, GLASS, 10),
    )
    c.rect(at(0.0, belt - 0.02), at(1.0, 0.82), body, radius=0.12 * h)
    c.line([at(0.03, 0.62), at(0.97, 0.62)], _shade(body, 0.7), width=max(1.0, h / 30))
    for fx in (0.2, 0.8):
        c.ellipse(at(fx, 0.8), 0.19 * h, 0.19 * h, TIRE)
        c.ellipse(at(fx, 0.8), 0.08 * h, 0.08 * h, (150, 150, 150))
    c.rect(at(0.95, belt + 0.04), at(1.0, belt + 0.14), (250, 235, 180))
    c.rect(at(0.0, belt + 0.04), at(0.04, belt + 0.14), (200, 20, 20))
    c.light(at(1.0, belt + 0.09), 0.12 * h, HEADLIGHT, 1.2)
    c.light(at(0.0, belt + 0.09), 0.08 * h, TAILLIGHT, 0.8)


def draw_person(c: _Canvas, rng: np.random.Generator, box: Box, facing: int) -> None:
    """Standing or walking: head, torso, arms and two legs (tall and thin)."""
    at = _frame(box, facing)
    w, h = box[2] - box[0], box[3] - box[1]
    skin, shirt = _pick(rng, SKIN, 10), _vary(rng, tuple(rng.integers(20, 236, 3)), 0)
    pants = _vary(rng, ((40, 45, 70), (30, 30, 30), (90, 70, 50), (70, 80, 110))[rng.integers(4)])
    stride = rng.uniform(0.0, 0.3)
    lw = max(1.0, w * 0.32)
    c.line([at(0.5, 0.55), at(0.5 - stride, 0.98)], pants, width=lw)
    c.line([at(0.5, 0.55), at(0.5 + stride, 0.98)], _shade(pants, 0.85), width=lw)
    c.rect(at(0.18, 0.18), at(0.82, 0.6), shirt, radius=0.1 * w)
    c.line([at(0.2, 0.22), at(0.05 + stride / 2, 0.52)], _shade(shirt, 0.85), width=lw * 0.7)
    c.line([at(0.8, 0.22), at(0.95 - stride / 2, 0.52)], _shade(shirt, 0.85), width=lw * 0.7)
    r = max(0.55, min(0.3 * w, 0.09 * h))
    c.ellipse(at(0.5, 0.1), r, r * 1.1, skin)
    if rng.random() < 0.5:  # hair or hat
        c.rect(
            at(0.5 - r / w, 0.01),
            at(0.5 + r / w, 0.07),
            _pick(rng, ((30, 20, 10), (90, 60, 30), (20, 20, 20), (200, 60, 40))),
        )


def draw_bicycle(c: _Canvas, rng: np.random.Generator, box: Box, facing: int) -> None:
    """Two spoked wheels and a diamond frame with saddle and handlebar."""
    at = _frame(box, facing)
    w, h = box[2] - box[0], box[3] - box[1]
    frame = _pick(rng, VEHICLE_COLORS, 30)
    r = min(0.34 * h, 0.2 * w)
    lw = max(1.0, h / 11)
    fr, ry = r / w, 1.0 - r / h
    rear, front = at(fr, ry), at(1 - fr, ry)
    crank, seat = at(0.45, ry), at(0.36, 0.22)
    head, bar = at(0.72, 0.28), at(0.76, 0.04)
    for hub in (rear, front):
        c.ellipse(hub, r, r, None, outline=TIRE, width=max(1, round(lw)))
    for a, b in (
        (rear, crank),
        (rear, seat),
        (seat, crank),
        (seat, head),
        (crank, head),
        (head, front),
        (head, bar),
    ):
        c.line([a, b], frame, width=lw)
    c.line([at(0.3, 0.18), at(0.42, 0.18)], (30, 30, 30), width=lw * 1.3)
    c.line([at(0.72, 0.04), at(0.84, 0.06)], (30, 30, 30), width=lw)


def draw_rider(c: _Canvas, rng: np.random.Generator, bike_box: Box, facing: int) -> None:
    """A cyclist seated on the bicycle in ``bike_box`` (annotated as a person)."""
    at = _frame(bike_box, facing)
    h = bike_box[3] - bike_box[1]
    skin, shirt = _pick(rng, SKIN, 10), _vary(rng, tuple(rng.integers(20, 236, 3)), 0)
    pants = _vary(rng, (45, 45, 70))
    lw = max(1.0, h * 0.14)
    c.line([at(0.37, 0.16), at(0.5, 0.45), at(0.45, 0.7)], pants, width=lw)
    c.line([at(0.36, 0.18), at(0.5, -0.55)], shirt, width=lw * 1.6)
    c.line([at(0.5, -0.5), at(0.75, 0.04)], _shade(shirt, 0.85), width=lw * 0.8)
    r = max(0.55, 0.16 * h)
    c.ellipse(at(0.53, -0.76), r, r * 1.1, skin)


def draw_truck(c: _Canvas, rng: np.random.Generator, box: Box, facing: int) -> None:
    """A cab at the front and a taller box trailer, three wheels."""
    at = _frame(box, facing)
    h = box[3] - box[1]
    cab = _pick(rng, VEHICLE_COLORS)
    trailer = _pick(rng, ((235, 235, 235), (180, 180, 185), (120, 90, 60), *VEHICLE_COLORS), 12)
    cab_top = rng.uniform(0.25, 0.38)
    c.rect(at(0.0, 0.82), at(1.0, 0.9), (40, 40, 40))
    c.rect(at(0.0, 0.0), at(0.71, 0.84), trailer, radius=0.03 * h)
    if rng.random() < 0.5:
        c.rect(at(0.04, 0.35), at(0.67, 0.5), _pick(rng, VEHICLE_COLORS))
    c.rect(at(0.73, cab_top), at(1.0, 0.86), cab, radius=0.06 * h)
    c.rect(at(0.82, cab_top + 0.06), at(0.97, cab_top + 0.24), _vary(rng, GLASS, 10))
    for fx in (0.12, 0.27, 0.86):
        c.ellipse(at(fx, 0.87), 0.13 * h, 0.13 * h, TIRE)
    c.light(at(1.0, 0.72), 0.1 * h, HEADLIGHT, 1.2)
    c.light(at(0.0, 0.78), 0.07 * h, TAILLIGHT, 0.8)


def draw_bus(c: _Canvas, rng: np.random.Generator, box: Box, facing: int) -> None:
    """A long box with a row of windows, a door and two wheels."""
    at = _frame(box, facing)
    w, h = box[2] - box[0], box[3] - box[1]
    body = _pick(rng, BUS_COLORS)
    glass = _vary(rng, GLASS, 10)
    c.rect(at(0.0, 0.0), at(1.0, 0.86), body, radius=0.08 * h)
    n = max(3, int(w / (0.45 * h)))
    for i in range(n):
        x0 = 0.04 + i * 0.8 / n
        c.rect(at(x0, 0.14), at(x0 + 0.8 / n - 0.02, 0.45), glass)
    c.rect(at(0.9, 0.1), at(0.99, 0.5), glass)
    c.rect(at(0.84, 0.18), at(0.89, 0.82), _shade(body, 0.6))
    c.rect(at(0.0, 0.56), at(1.0, 0.62), _pick(rng, BUS_COLORS))
    for fx in (0.16, 0.76):
        c.ellipse(at(fx, 0.86), 0.13 * h, 0.13 * h, TIRE)
    c.light(at(1.0, 0.72), 0.1 * h, HEADLIGHT, 1.2)
    c.light(at(0.0, 0.72), 0.07 * h, TAILLIGHT, 0.8)
    for i in range(n):  # lit cabin
        c.light(at(0.04 + (i + 0.5) * 0.8 / n, 0.3), 0.1 * h, (255, 230, 160), 0.35)


def draw_train(c: _Canvas, rng: np.random.Generator, box: Box, facing: int) -> None:
    """A locomotive and carriages on rails: very long, windows, dark bogies."""
    at = _frame(box, facing)
    w, h = box[2] - box[0], box[3] - box[1]
    body, stripe = _pick(rng, TRAIN_COLORS), _pick(rng, TRAIN_COLORS)
    cars = int(rng.integers(2, 5))
    seg = 1.0 / cars
    gap = min(0.02, 1.5 / max(w, 1))
    for k in range(cars):
        x0, x1 = k * seg, (k + 1) * seg - gap
        nose = k == cars - 1
        end = x1 - (0.35 * seg if nose else 0.0)
        c.rect(at(x0, 0.05), at(end, 0.84), body)
        if nose:
            c.polygon(
                [
                    at(end - 0.001, 0.05),
                    at(x1 - 0.12 * seg, 0.1),
                    at(x1, 0.6),
                    at(x1, 0.84),
                    at(end - 0.001, 0.84),
                ],
                body,
            )
            c.polygon(
                [
                    at(end, 0.14),
                    at(x1 - 0.14 * seg, 0.16),
                    at(x1 - 0.06 * seg, 0.42),
                    at(end, 0.42),
                ],
                _vary(rng, GLASS, 10),
            )
            c.light(at(x1, 0.7), 0.12 * h, HEADLIGHT, 1.3)
        c.rect(at(x0, 0.0), at(end, 0.07), _shade(body, 0.65))
        c.rect(at(x0, 0.55), at(x1, 0.63), stripe)
        n = max(2, int(seg * w / (0.5 * h)))
        span = end - x0
        for i in range(n):
            wx = x0 + span * (0.06 + i * 0.9 / n)
            c.rect(at(wx, 0.18), at(wx + span * 0.9 / n * 0.7, 0.45), _vary(rng, GLASS, 10))
            c.light(at(wx + span * 0.3 / n, 0.3), 0.08 * h, (255, 230, 170), 0.3)
        c.rect(at(x0 + 0.05 * seg, 0.84), at(x0 + 0.25 * seg, 1.0), (35, 35, 35))
        c.rect(at(x1 - 0.25 * seg, 0.84), at(x1 - 0.05 * seg, 1.0), (35, 35, 35))


@dataclass(frozen=True)
class _ClassSpec:
    draw: Callable[[_Canvas, np.random.Generator, Box, int], None]
    height: float  # box height at the bottom row, as a fraction of the image size
    aspect: tuple[float, float]  # width / height
    depth: tuple[float, float]  # range of the perspective scale s of the object's foot


CLASS_SPECS: dict[str, _ClassSpec] = {
    "car": _ClassSpec(draw_car, 0.28, (1.65, 2.0), (0.3, 1.08)),
    "person": _ClassSpec(draw_person, 0.44, (0.34, 0.46), (0.3, 1.05)),
    "bicycle": _ClassSpec(draw_bicycle, 0.24, (1.5, 1.75), (0.32, 1.05)),
    "truck": _ClassSpec(draw_truck, 0.38, (1.8, 2.3), (0.26, 0.8)),
    "bus": _ClassSpec(draw_bus, 0.34, (2.4, 3.0), (0.26, 0.75)),
    "train": _ClassSpec(draw_train, 0.26, (4.0, 7.0), (0.3, 0.55)),
}


# -- scene layout and background --------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Perspective geometry: a road converging at ``(vx, horizon)``."""

    size: int
    horizon: float
    vx: float
    road_half: float  # half road width at the bottom row
    walk: float  # sidewalk width at the bottom row
    rails: float | None  # y of the rails (level crossing), if any

    def scale(self, y: float) -> float:
        """Perspective scale: 0 at the horizon, 1 at the bottom row."""
        return max(0.0, (y - self.horizon) / (self.size - self.horizon))

    def y_at(self, s: float) -> float:
        return self.horizon + s * (self.size - self.horizon)

    def road_edges(self, y: float) -> tuple[float, float]:
        half = self.road_half * self.scale(y)
        return self.vx - half, self.vx + half


@dataclass
class _Item:
    """Something drawn in depth order: an object (annotated) or a distractor."""

    kind: str
    box: Box
    facing: int
    rider: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def foot(self) -> float:
        return self.box[3]


def _layout(rng: np.random.Generator, size: int, rails: bool) -> _Layout:
    horizon = size * rng.uniform(0.35, 0.45)
    rails_y = None
    if rails:
        rails_y = horizon + (size - horizon) * rng.uniform(0.16, 0.42)
    return _Layout(
        size=size,
        horizon=horizon,
        vx=size * rng.uniform(0.35, 0.65),
        road_half=size * rng.uniform(0.42, 0.7),
        walk=size * rng.uniform(0.22, 0.38),
        rails=rails_y,
    )


def _draw_sky(c: _Canvas, rng: np.random.Generator, lay: _Layout) -> None:
    if rng.random() < 0.25:  # overcast
        g = rng.uniform(150, 215)
        top, bottom = np.array([g - 10, g - 5, g + 5]), np.array([g + 20, g + 20, g + 25])
    else:
        top = rng.uniform([60, 110, 190], [130, 175, 245])
        bottom = rng.uniform([170, 195, 220], [225, 235, 252])
    rows = math.ceil(lay.horizon) + 1
    for y in range(rows):
        t = y / max(1, rows - 1)
        colour = tuple(int(v) for v in top * (1 - t) + bottom * t)
        c.draw.line([(0, y), (lay.size, y)], fill=colour)  # type: ignore[arg-type]


def _draw_skyline(c: _Canvas, rng: np.random.Generator, lay: _Layout) -> None:
    """Buildings and trees along the horizon (lit windows are night lights)."""
    size, hz = lay.size, lay.horizon
    x = -rng.uniform(0, 10)
    while x < size:
        w = rng.uniform(0.05, 0.2) * size
        if rng.random() < 0.3:
            _draw_tree(c, rng, x + w / 2, hz + 1, rng.uniform(0.08, 0.2) * size)
        else:
            top = hz - rng.uniform(0.05, 0.3) * size
            g = rng.uniform(70, 190)
            base = _vary(rng, (int(g), int(g * 0.95), int(g * 0.9)), 20)
            c.draw.rectangle([round(x), round(top), round(x + w), round(hz) + 1], fill=base)
            _draw_windows(c, rng, (x, top, x + w, hz), base)
        x += w + rng.uniform(-0.02, 0.04) * size


def _draw_windows(c: _Canvas, rng: np.random.Generator, box: Box, base: RGB) -> None:
    x0, y0, x1, y1 = box
    step = max(3.0, (x1 - x0) / rng.integers(2, 5))
    dark = _shade(base, 0.6)
    y = y0 + 2
    while y < y1 - 3:
        x = x0 + 1.5
        while x < x1 - 2:
            c.draw.rectangle([round(x), round(y), round(x) + 1, round(y) + 1], fill=dark)
            if rng.random() < 0.3:
                c.light((x + 1, y + 1), 0.8, (255, 220, 140), 0.5)
            x += step
        y += step


def _draw_tree(c: _Canvas, rng: np.random.Generator, x: float, foot: float, h: float) -> None:
    trunk = max(1.0, h * 0.08)
    c.draw.rectangle(
        [round(x - trunk / 2), round(foot - h * 0.45), round(x + trunk / 2), round(foot)],
        fill=(70, 50, 35),
    )
    green = _vary(rng, (50, 110, 50), 25)
    for _ in range(3):
        cx = x + rng.uniform(-0.2, 0.2) * h
        cy = foot - h * rng.uniform(0.55, 0.8)
        r = h * rng.uniform(0.22, 0.35)
        c.draw.ellipse([round(cx - r), round(cy - r), round(cx + r), round(cy + r)], fill=green)


def _draw_ground(c: _Canvas, rng: np.random.Generator, lay: _Layout) -> None:
    """Verge, sidewalks, road with lane markings, and rails when present."""
    size, hz, vx = lay.size, lay.horizon, lay.vx
    verge = _pick(rng, ((80, 125, 60), (110, 100, 80), (130, 130, 125), (95, 140, 70)), 15)
    c.draw.rectangle([0, round(hz), size, size], fill=verge)
    walk = _vary(rng, (165, 160, 155), 15)
    outer = lay.road_half + lay.walk
    c.draw.polygon([(vx, hz), (vx - outer * 1.0, size), (vx + outer, size)], fill=walk)
    asphalt = _vary(rng, (95, 95, 100), 20)
    c.draw.polygon([(vx, hz), (vx - lay.road_half, size), (vx + lay.road_half, size)], fill=asphalt)
    kerb = _shade(walk, 0.75)
    for side in (-1, 1):
        c.draw.line([(vx, hz), (vx + side * lay.road_half, size)], fill=kerb, width=1)
    _draw_lane_marks(c, rng, lay)
    for _ in range(int(rng.integers(0, 4))):  # patches, manholes, shadows on the road
        y = lay.y_at(rng.uniform(0.1, 1.0))
        left, right = lay.road_edges(y)
        x = rng.uniform(left, right)
        rx, ry = rng.uniform(0.03, 0.15) * size * lay.scale(y) + 1, rng.uniform(0.5, 3)
        fill = _shade(asphalt, rng.uniform(0.55, 0.85))
        c.draw.ellipse([round(x - rx), round(y - ry), round(x + rx), round(y + ry)], fill=fill)
    if lay.rails is not None:
        _draw_rails(c, lay.rails, lay)


def _draw_lane_marks(c: _Canvas, rng: np.random.Generator, lay: _Layout) -> None:
    colour = (235, 235, 225) if rng.random() < 0.7 else (225, 190, 60)
    s = 0.12
    while s < 1.1:
        y0, y1 = lay.y_at(s), lay.y_at(s * 1.18)
        w = max(1, round(2.5 * s * lay.size / 128))
        c.draw.line([(lay.vx, y0), (lay.vx, y1)], fill=colour, width=w)
        s *= 1.45


def _draw_rails(c: _Canvas, y: float, lay: _Layout) -> None:
    s = lay.scale(y)
    gauge = max(2.0, 0.05 * lay.size * s)
    for x in range(0, lay.size, max(2, round(4 * s * lay.size / 64))):
        c.draw.line([(x, y - gauge * 0.2), (x, y + gauge * 1.1)], fill=(90, 70, 50), width=1)
    for dy in (0.0, gauge):
        c.draw.line([(0, y + dy), (lay.size, y + dy)], fill=(60, 60, 65), width=1)


# -- distractors (drawn, never annotated) -----------------------------------------------


def _draw_pole(c: _Canvas, rng: np.random.Generator, item: _Item) -> None:
    x0, y0, x1, y1 = item.box
    x = (x0 + x1) / 2
    grey = _vary(rng, (70, 70, 75), 15)
    c.line([(x, y1), (x, y0)], grey, width=x1 - x0)
    kind = item.extra["top"]
    h = y1 - y0
    if kind == "lamp":
        arm = 0.18 * h * item.facing
        c.line([(x, y0), (x + arm, y0)], grey, width=max(1, (x1 - x0) * 0.8))
        c.rect((x + arm - 0.04 * h, y0), (x + arm + 0.04 * h, y0 + 0.04 * h), (230, 230, 200))
        c.light((x + arm, y0 + 0.04 * h), 0.06 * h + 1, (255, 225, 150), 1.4)
        c.light((x + arm, y1), 0.25 * h, (255, 215, 150), 0.2)  # the pool of light
    elif kind == "sign":
        r = 0.12 * h
        colour = _pick(rng, ((200, 30, 30), (30, 70, 180), (240, 200, 30), (240, 240, 240)), 10)
        if rng.random() < 0.5:
            c.ellipse((x, y0 + r), r, r, colour)
        else:
            c.polygon([(x - r, y0 + 2 * r), (x + r, y0 + 2 * r), (x, y0)], colour)


def _draw_bush(c: _Canvas, rng: np.random.Generator, item: _Item) -> None:
    x0, y0, x1, y1 = item.box
    green = _vary(rng, (55, 115, 50), 25)
    for _ in range(int(rng.integers(2, 5))):
        cx = rng.uniform(x0, x1)
        rx, ry = (x1 - x0) * rng.uniform(0.25, 0.45), (y1 - y0) * rng.uniform(0.35, 0.5)
        c.ellipse((cx, y1 - ry), rx, ry, _shade(green, rng.uniform(0.8, 1.2)))


def _draw_block(c: _Canvas, rng: np.random.Generator, item: _Item) -> None:
    """Bins, kiosks, billboards, bollards: boxes in vehicle colours."""
    x0, y0, x1, y1 = item.box
    colour = _pick(rng, (*VEHICLE_COLORS, *BUS_COLORS), 25)
    c.rect((x0, y0), (x1, y1), colour, radius=rng.uniform(0, 0.2) * (x1 - x0))
    if rng.random() < 0.5:
        c.rect((x0, y0), (x1, y0 + (y1 - y0) * 0.25), _shade(colour, 0.6))


DISTRACTORS: dict[str, Callable[[_Canvas, np.random.Generator, _Item], None]] = {
    "pole": _draw_pole,
    "bush": _draw_bush,
    "block": _draw_block,
}


# -- placing things ---------------------------------------------------------------------


def _sample_kinds(rng: np.random.Generator) -> list[str]:
    n = int(rng.integers(2, MAX_OBJECTS + 1))
    names = list(CLASS_WEIGHTS)
    p = np.array([CLASS_WEIGHTS[k] for k in names])
    kinds = [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]
    if kinds.count("train") > 1:  # one train per image (one track)
        first = kinds.index("train")
        kinds = [k if (k != "train" or i == first) else "car" for i, k in enumerate(kinds)]
    return kinds


def _object_x(rng: np.random.Generator, lay: _Layout, kind: str, foot: float) -> float:
    left, right = lay.road_edges(foot)
    walk = lay.walk * lay.scale(foot)
    side = 1 if rng.random() < 0.5 else -1
    edge = right if side > 0 else left
    if kind in ("car", "truck", "bus") or (kind == "person" and rng.random() < 0.25):
        return rng.uniform(left + 0.1 * (right - left), right - 0.1 * (right - left))
    if kind == "bicycle" and rng.random() < 0.6:
        return edge - side * rng.uniform(0.05, 0.3) * (right - left) / 2
    return edge + side * rng.uniform(0.1, 1.0) * walk


def _place_object(rng: np.random.Generator, lay: _Layout, kind: str, near: _Item | None) -> _Item:
    spec = CLASS_SPECS[kind]
    facing = 1 if rng.random() < 0.5 else -1
    if kind == "train":
        assert lay.rails is not None
        s = lay.scale(lay.rails)
    elif near is not None:  # next to an earlier object: occlusion
        s = float(np.clip(lay.scale(near.foot) + rng.uniform(-0.06, 0.15), *spec.depth))
    else:
        lo, hi = spec.depth
        s = lo + (hi - lo) * rng.random() ** FAR_BIAS
    foot = lay.y_at(s)
    h = lay.size * spec.height * max(s, 0.02) * rng.uniform(0.85, 1.15)
    w = h * rng.uniform(*spec.aspect)
    if kind == "train":
        cx = rng.uniform(0.0, lay.size)  # at least half of it inside the frame
    elif near is not None:
        nw = near.box[2] - near.box[0]
        cx = (near.box[0] + near.box[2]) / 2 + rng.choice([-1, 1]) * rng.uniform(
            *CLUSTER_OFFSET
        ) * (nw + w) / 2
    else:
        cx = _object_x(rng, lay, kind, foot)
    rider = kind == "bicycle" and rng.random() < 0.5
    return _Item(kind, (cx - w / 2, foot - h, cx + w / 2, foot), facing, rider=rider)


def _place_distractors(rng: np.random.Generator, lay: _Layout) -> list[_Item]:
    items = []
    for _ in range(int(rng.integers(1, 6))):
        kind = ("pole", "pole", "bush", "block")[int(rng.integers(4))]
        s = rng.uniform(0.1, 1.0)
        foot = lay.y_at(s)
        left, right = lay.road_edges(foot)
        side = 1 if rng.random() < 0.5 else -1
        x = (right if side > 0 else left) + side * rng.uniform(0.0, 1.2) * lay.walk * s
        unit = lay.size * s
        if kind == "pole":
            w, h = max(1.0, 0.02 * unit), unit * rng.uniform(0.5, 0.8)
        elif kind == "bush":
            w, h = unit * rng.uniform(0.15, 0.4), unit * rng.uniform(0.08, 0.2)
        else:
            w, h = unit * rng.uniform(0.04, 0.3), unit * rng.uniform(0.08, 0.3)
        top = ("lamp", "sign", "none")[int(rng.integers(3))]
        items.append(_Item(kind, (x - w / 2, foot - h, x + w / 2, foot), -side, extra={"top": top}))
    return items


# -- one scene --------------------------------------------------------------------------


@dataclass
class _Scene:
    image: np.ndarray  # uint8 HxWx3
    night: bool
    objects: list[dict[str, Any]]  # category, bbox, occluded, truncated


def _annotate(c: _Canvas, owner: int, kind: str, full: dict[int, tuple[Any, int, float]]) -> None:
    """Record the in-frame box and pixel count of the object just drawn."""
    m = np.asarray(c.mask)
    ys, xs = np.nonzero(m == owner)
    x0, y0, x1, y1 = c.extent
    box_area = max(1e-6, (x1 - x0) * (y1 - y0))
    cx0, cy0 = max(0.0, x0), max(0.0, y0)
    cx1, cy1 = min(float(c.size), x1), min(float(c.size), y1)
    inside = max(0.0, cx1 - cx0) * max(0.0, cy1 - cy0) / box_area
    if len(xs) == 0:
        return
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    full[owner] = ((kind, bbox), len(xs), inside)


def scene(rng: np.random.Generator, size: int) -> _Scene:
    """Draw one street scene and return pixels, day/night and annotations."""
    night = bool(rng.random() < NIGHT_PROBABILITY)
    kinds = _sample_kinds(rng)
    lay = _layout(rng, size, rails="train" in kinds or rng.random() < 0.15)
    c = _Canvas(size)
    _draw_sky(c, rng, lay)
    _draw_skyline(c, rng, lay)
    _draw_ground(c, rng, lay)

    items: list[_Item] = []
    for kind in kinds:
        near = (
            items[-1] if items and kind != "train" and rng.random() < CLUSTER_PROBABILITY else None
        )
        items.append(_place_object(rng, lay, kind, near))
        if items[-1].rider and len(kinds) + sum(it.rider for it in items) > MAX_OBJECTS:
            items[-1].rider = False
    items += _place_distractors(rng, lay)
    items.sort(key=lambda it: it.foot)

    full: dict[int, tuple[Any, int, float]] = {}
    owner = 0
    for item in items:
        if item.kind in DISTRACTORS:
            c.begin(255)
            DISTRACTORS[item.kind](c, rng, item)
            continue
        owner += 1
        _draw_shadow(c, item)
        c.begin(owner)
        CLASS_SPECS[item.kind].draw(c, rng, item.box, item.facing)
        _annotate(c, owner, item.kind, full)
        if item.rider:
            owner += 1
            c.begin(owner)
            draw_rider(c, rng, item.box, item.facing)
            _annotate(c, owner, "person", full)

    objects = _visible_objects(np.asarray(c.mask), full)
    pixels = _add_texture(rng, np.asarray(c.image, dtype=np.float32))
    pixels = apply_night(rng, pixels, c.lights) if night else apply_day(rng, pixels)
    return _Scene(pixels, night, objects)


def _draw_shadow(c: _Canvas, item: _Item) -> None:
    x0, _, x1, y1 = item.box
    ry = max(0.8, (x1 - x0) * 0.06)
    c.draw.ellipse(
        [round(x0 - 1), round(y1 - ry), round(x1 + 1), round(y1 + ry)], fill=(45, 45, 50)
    )


def _visible_objects(
    mask: np.ndarray, full: dict[int, tuple[Any, int, float]]
) -> list[dict[str, Any]]:
    counts = np.bincount(mask.ravel(), minlength=256)
    objects = []
    for owner, ((kind, bbox), area, inside) in full.items():
        occluded = 1.0 - counts[owner] / area
        if occluded > MAX_OCCLUDED or inside < MIN_INSIDE:
            continue
        x0, y0, x1, y1 = bbox
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        objects.append(
            {
                "kind": kind,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "occluded": round(float(occluded), 3),
                "truncated": round(1.0 - inside, 3),
            }
        )
    return objects


# -- photometry: texture, day and night -------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]-ish: a coarse Gaussian grid, bilinearly upsampled."""
    n = size // cell + 2
    coarse = rng.normal(0.0, 1.0, (n, n)).astype(np.float32)
    up = Image.fromarray(coarse, mode="F").resize((n * cell, n * cell), Image.Resampling.BILINEAR)
    return np.asarray(up)[:size, :size]


def _add_texture(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    size = img.shape[0]
    img += _smooth_noise(rng, size, 8)[..., None] * rng.uniform(3, 8)
    img += _smooth_noise(rng, size, 2)[..., None] * rng.uniform(1, 4)
    return img


def apply_day(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Mild brightness and colour jitter plus a little sensor noise."""
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.95, 1.05, size=3)
    img = img * gain.astype(np.float32) + rng.normal(0.0, rng.uniform(1.5, 4.0), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def apply_night(rng: np.random.Generator, img: np.ndarray, lights: list[_Light]) -> np.ndarray:
    """Dark (x0.25-0.4), blue-tinted, noisy, with glowing lamps and vehicle lights."""
    gain = rng.uniform(0.25, 0.4) * np.array([0.75, 0.85, 1.15]) * rng.uniform(0.93, 1.07, 3)
    img = img * gain.astype(np.float32)
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for light in lights:
        if rng.random() < 0.15:  # some lights are off
            continue
        r = light.radius
        span = math.ceil(4 * r) + 1
        x0, x1 = max(0, int(light.x) - span), min(size, int(light.x) + span + 1)
        y0, y1 = max(0, int(light.y) - span), min(size, int(light.y) + span + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        d2 = (xx[y0:y1, x0:x1] - light.x) ** 2 + (yy[y0:y1, x0:x1] - light.y) ** 2
        glow = np.exp(-d2 / (2 * (0.6 * r) ** 2)) + 0.3 * np.exp(-d2 / (2 * (2.0 * r) ** 2))
        img[y0:y1, x0:x1] += (light.strength * 200.0 * glow)[..., None] * (
            np.asarray(light.color, dtype=np.float32) / 255.0
        )
    img += rng.normal(0.0, rng.uniform(8.0, 15.0), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# -- writing a dataset ------------------------------------------------------------------


TOYDRIVE = GeneratedDataset(
    name="toydrive",
    version=GENERATOR_VERSION,
    categories=[
        {"id": i + 1, "name": n, "supercategory": "street"} for i, n in enumerate(TOYDRIVE_CLASSES)
    ],
    min_image_size=64,
)


def toydrive_paths(out_dir: Path) -> dict[str, Path]:
    """The files of a toydrive dataset in ``out_dir``: each split's json and ``images``."""
    return TOYDRIVE.paths(out_dir)


def generate_toydrive(
    out_dir: Path,
    *,
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 400,
    image_size: int = 128,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Generate toydrive into ``out_dir`` (atomically) unless it is already there.

    Returns ``{"train": json, "val": json, "images": dir}``; ``file_name`` in the json
    files is relative to ``images``. Concurrent callers (xdist workers) generate once.
    """
    params = TOYDRIVE.params(seed, n_train, n_val, image_size)
    return TOYDRIVE.generate(out_dir, params, _write_split, progress)


def _write_split(
    root: Path,
    split: str,
    split_index: int,
    params: dict[str, int],
    progress: Callable[[str], None] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    n = params[f"n_{split}"]
    images, annotations = [], []
    for index in range(n):
        image_id = index + 1
        rng = np.random.default_rng(np.random.SeedSequence([params["seed"], split_index, index]))
        sc = scene(rng, params["image_size"])
        file_name = f"{split}/{image_id:06d}.png"
        Image.fromarray(sc.image).save(root / "images" / file_name, compress_level=1)
        images.append(_image_entry(image_id, file_name, params["image_size"], sc.night))
        for obj in sc.objects:
            annotations.append(_annotation_entry(len(annotations) + 1, image_id, obj))
        if progress is not None and (index + 1) % 500 == 0:
            progress(f"toydrive {split}: {index + 1}/{n} images")
    return images, annotations


def _image_entry(image_id: int, file_name: str, size: int, night: bool) -> dict[str, Any]:
    return {
        "id": image_id,
        "file_name": file_name,
        "width": size,
        "height": size,
        "attributes": {"timeofday": "night" if night else "day"},
    }


def _annotation_entry(ann_id: int, image_id: int, obj: dict[str, Any]) -> dict[str, Any]:
    x, y, w, h = obj["bbox"]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": TOYDRIVE_CLASSES.index(obj["kind"]) + 1,
        "bbox": [x, y, w, h],
        "area": w * h,
        "iscrowd": 0,
        "occluded": obj["occluded"],
        "truncated": obj["truncated"],
    }
