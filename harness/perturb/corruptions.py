"""Image corruptions (imagecorruptions, Hendrycks & Dietterich) for corruption robustness.

Every corrupted image is a pure function of (image, corruption, severity, seed, image id):
:func:`corrupt_image` seeds numpy's global RNG (which the library draws from) with
:func:`corruption_seed` and restores the caller's numpy and ``random`` states afterwards.
:func:`corrupt_many` spreads the work over processes; :func:`corrupted_sets` stores each
(corruption, severity) set in the cache as one safetensors file of PNG-compressed images
(lossless), read back one image at a time (``StoredImages``). DESIGN.md section 4.

Behaviour of imagecorruptions 1.1.5 that this module accounts for:

* ``impulse_noise`` and ``glass_blur`` ignore numpy's global RNG: without a ``seed``
  argument they draw fresh OS entropy (skimage ``random_noise`` and
  ``np.random.default_rng()``), so they get the per-image seed as an argument too;
* the library's ``corrupt`` casts its float result with ``np.uint8`` (truncation, not
  rounding); we do the same so results equal the library's ``corrupt`` bit for bit;
* ``spatter`` divides 0 by 0 when an image gets no liquid (small images, severity 1)
  and returns NaN pixels, which its cast turns into garbage; we keep the clean pixel;
* ``glass_blur`` is numba code compiled on first use (about 3 s per process); we turn on
  numba's on-disk cache for it (what ``@njit(cache=True)`` would do).

This module imports nothing heavy at import time (no torch), so that pool workers start
quickly; the library itself is imported on first use.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import hashlib
import io
import json
import multiprocessing
import os
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from robustness_harness.errors import CheckError

if TYPE_CHECKING:
    from robustness_harness.store.cache import Cache
    from robustness_harness.suite.problems import SpecProblem

__all__ = [
    "ALL",
    "BENCHMARK",
    "DETERMINISTIC",
    "FAMILIES",
    "SEVERITIES",
    "CorruptionData",
    "check_severities",
    "corrupt_image",
    "corrupt_many",
    "corrupted_images",
    "corrupted_sets",
    "corruption_seed",
    "family_of",
    "imagecorruptions_version",
    "require_corruptible",
    "resolve_corruptions",
    "shutdown_workers",
]

FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
}
"""The 15 benchmark corruptions in the library's four families, plus its four extra
("validation") corruptions."""

BENCHMARK: tuple[str, ...] = tuple(
    name for family in ("noise", "blur", "weather", "digital") for name in FAMILIES[family]
)
ALL: tuple[str, ...] = BENCHMARK + FAMILIES["extra"]
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

DETERMINISTIC: frozenset[str] = frozenset(
    {
        "defocus_blur",
        "zoom_blur",
        "brightness",
        "contrast",
        "pixelate",
        "jpeg_compression",
        "gaussian_blur",
        "saturate",
    }
)
"""Corruptions that use no randomness: the seed does not change their output."""

_SEED_ARGUMENT = frozenset({"impulse_noise", "glass_blur"})
_GROUPS = {"benchmark": BENCHMARK, "all": ALL, **FAMILIES}
_MIN_SIDE = 32
_SEV_HINT = "write severities such as [1, 2, 3, 4, 5] or [3]"
_FILE = "images.safetensors"
_FORMAT = 2  # bump when the stored images would change (post-processing, seeding, encoding)
_PNG_LEVEL = 1  # zlib level: most of the size gain of level 6 at a fraction of its time
_CHUNK_UNITS = 32  # (corruption, severity, image) units per pool task
_IN_FLIGHT_PER_WORKER = 4
_RNG_LOCK = threading.Lock()
_POOL_LOCK = threading.Lock()
_POOLS: dict[int, tuple[int, cf.ProcessPoolExecutor]] = {}  # workers -> (pid, pool)

Job = tuple[str, int]
Images = dict[int, np.ndarray]


class CorruptionData(Protocol):
    """What :func:`corrupted_sets` needs of a dataset (``CocoDetectionData`` has it)."""

    image_ids: list[int]

    @property
    def fingerprint(self) -> str: ...

    def load_image(self, image_id: int) -> np.ndarray: ...


# ----------------------------------------------------------------------- names


def resolve_corruptions(spec: str | Sequence[str]) -> list[str]:
    """Corruption names for ``"benchmark"``, ``"all"``, a family, a name, or a list of these.

    Duplicates are dropped, first occurrence kept. Raises ``SpecProblem`` for unknown
    names (with a did-you-mean hint) and for an empty list.
    """
    if isinstance(spec, str):
        return list(_resolve_one(spec, ()))
    if not isinstance(spec, Sequence) or not spec:
        raise _problem(
            "expected a corruption name, a family or a non-empty list of them",
            hint=f"write e.g. corruptions: benchmark, or a list; {_valid_text()}",
        )
    names: dict[str, None] = {}
    for i, item in enumerate(spec):
        names.update(dict.fromkeys(_resolve_one(item, (i,))))
    return list(names)


def _resolve_one(item: object, loc: tuple[int, ...]) -> tuple[str, ...]:
    if not isinstance(item, str):
        raise _problem(f"expected a corruption name, got {item!r}", hint=_valid_text(), loc=loc)
    if item in _GROUPS:
        return _GROUPS[item]
    if item in ALL:
        return (item,)
    from robustness_harness.registry import did_you_mean

    known = [*_GROUPS, *ALL]
    raise _problem(
        f"unknown corruption '{item}'",
        hint=f"{did_you_mean(item, known)}{_valid_text()}",
        loc=loc,
        unknown=True,
    )


def _valid_text() -> str:
    return f"valid: {', '.join(_GROUPS)} or one of {', '.join(ALL)}"


def family_of(name: str) -> str:
    """The family (noise, blur, weather, digital, extra) of corruption ``name``."""
    for family, names in FAMILIES.items():
        if name in names:
            return family
    raise ValueError(f"unknown corruption {name!r}; {_valid_text()}")


def check_severities(severities: int | Iterable[int]) -> list[int]:
    """The severities as a sorted list without duplicates; each must be an int in 1..5.

    Raises ``SpecProblem`` for an empty list or a bad value.
    """
    values = [severities] if isinstance(severities, int) else severities
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise _problem(f"expected a list of severities, got {severities!r}", hint=_SEV_HINT)
    values = list(values)
    if not values:
        raise _problem("needs at least one severity", hint=_SEV_HINT)
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or value not in SEVERITIES:
            raise _problem(
                f"severity must be a whole number from 1 to 5, got {value!r}",
                hint=_SEV_HINT,
                loc=(i,),
            )
    return sorted(set(values))


def _problem(
    message: str, *, hint: str, loc: tuple[int, ...] = (), unknown: bool = False
) -> SpecProblem:
    from robustness_harness.suite.problems import SpecProblem  # imports torch: not at module level

    return SpecProblem(message, hint=hint, loc=loc, unknown=unknown)


# ---------------------------------------------------------------- one image


def corruption_seed(seed: int, image_id: int, name: str, severity: int) -> int:
    """A stable 32-bit seed: the first 4 bytes of sha256 over the JSON of the arguments."""
    text = json.dumps([int(seed), int(image_id), str(name), int(severity)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def corrupt_image(
    image: np.ndarray, name: str, severity: int, *, seed: int, image_id: int
) -> np.ndarray:
    """``image`` (uint8 H x W x 3 RGB, H and W >= 32) corrupted by ``name`` at ``severity``.

    Returns a new uint8 array of the same shape, equal to the library's
    ``corrupt(image, severity, name)`` after ``np.random.seed(s)`` (with ``seed=s`` also
    passed to impulse_noise and glass_blur), ``s = corruption_seed(seed, image_id, name,
    severity)``. The caller's numpy and ``random`` global states are left as they were.
    """
    _check_image(image)
    _check_job(name, severity)
    fn = _corruption_fn(name)
    s = corruption_seed(seed, image_id, name, severity)
    kwargs = {"seed": s} if name in _SEED_ARGUMENT else {}
    from PIL import Image

    pil = Image.fromarray(image)
    with _seeded_global_rng(s), np.errstate(divide="ignore", invalid="ignore"):
        out = fn(pil, severity, **kwargs)
    return _to_uint8(out, image)


def _check_image(image: object) -> None:
    expected = "a uint8 array of shape (H, W, 3), RGB, with H and W at least 32"
    if not isinstance(image, np.ndarray):
        raise ValueError(f"corruptions need {expected}; got {type(image).__name__}")
    shape = image.shape
    if image.ndim != 3 or shape[2] != 3:
        kind = _channels_kind(shape)
        fix = f"{kind} shape {shape} (convert it to RGB first)" if kind else f"shape {shape}"
        raise ValueError(f"corruptions need {expected}; got {fix}")
    if image.dtype != np.uint8:
        raise ValueError(f"corruptions need {expected}; got dtype {image.dtype}")
    if min(shape[:2]) < _MIN_SIDE:
        raise ValueError(f"corruptions need {expected}; got shape {shape}")


def _channels_kind(shape: tuple[int, ...]) -> str:
    """``grayscale``, ``RGBA`` or ``''`` for an image shape that is not H x W x 3."""
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return "grayscale"
    return "RGBA" if len(shape) == 3 and shape[2] == 4 else ""


def _check_job(name: str, severity: int) -> None:
    if name not in ALL:
        from robustness_harness.registry import did_you_mean

        raise ValueError(f"unknown corruption {name!r}; {did_you_mean(name, ALL)}{_valid_text()}")
    integer = isinstance(severity, int | np.integer) and not isinstance(severity, bool)
    if not integer or severity not in SEVERITIES:
        raise ValueError(f"severity must be an int from 1 to 5, got {severity!r}")


@functools.cache
def _library() -> ModuleType:
    import imagecorruptions

    return imagecorruptions


def _corruption_fn(name: str) -> Callable[..., Any]:
    if name == "glass_blur":
        _cache_glass_blur_jit()
    return _library().corruption_dict[name]


@functools.cache
def _cache_glass_blur_jit() -> None:
    """Let numba keep glass_blur's compiled code on disk (about 3 s per process otherwise).

    Equivalent to the library declaring ``@njit(cache=True)``; skipped when numba finds
    no writable cache directory.
    """
    with contextlib.suppress(Exception):
        _library().corruptions._shuffle_pixels_njit_glass_blur.enable_caching()


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG; restore numpy's and ``random``'s states on exit."""
    with _RNG_LOCK:
        np_state = np.random.get_state()
        py_state = random.getstate()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def _to_uint8(out: Any, image: np.ndarray) -> np.ndarray:
    """The library's result as uint8 of ``image``'s shape, cast as the library casts.

    NaN pixels become the input pixel; values are clipped to 0..255 and truncated
    (``np.uint8``, as ``imagecorruptions.corrupt``); a grayscale result is repeated over
    three channels; a result of another size is cropped or resized back. The result is
    always a new, writable, C-contiguous array.
    """
    arr = np.asarray(out)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    arr = _fit_shape(arr[..., :3], image.shape)
    if arr.dtype != np.uint8:
        arr = np.where(np.isnan(arr), image, arr) if arr.dtype.kind == "f" else arr
        arr = np.clip(arr, 0, 255)
    return np.array(arr, dtype=np.uint8, order="C")


def _fit_shape(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if arr.shape == shape:
        return arr
    h, w = shape[:2]
    if arr.shape[0] >= h and arr.shape[1] >= w:
        return arr[:h, :w]
    from PIL import Image

    fitted = np.clip(arr, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(fitted).resize((w, h), Image.BILINEAR))


# ------------------------------------------------------------------- many images


@dataclass(frozen=True)
class _Chunk:
    """One pool task: images and the (corruption, severity, image id) units to compute."""

    seed: int
    images: dict[int, np.ndarray]
    units: list[tuple[str, int, int]]


def _corrupt_chunk(chunk: _Chunk) -> list[np.ndarray]:
    """Run one chunk (in a pool worker or in-process)."""
    return [
        corrupt_image(chunk.images[i], name, sev, seed=chunk.seed, image_id=i)
        for name, sev, i in chunk.units
    ]


def _single_threaded_cv2() -> None:
    """One OpenCV thread in this process (and so in workers forked from it): the pool
    provides the parallelism, and a forked child must never touch OpenCV's thread pool."""
    import cv2

    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def _pool_context() -> multiprocessing.context.BaseContext:
    """``fork``, after making OpenCV single-threaded in the caller.

    Measured with torch loaded in the caller (2 workers, each running glass_blur once,
    under load): ``fork`` 0.08 s per pool, ``forkserver`` 2.0 s for the first pool and
    0.9 s later, ``spawn`` 3.5 s. ``forkserver`` and ``spawn`` also re-run the caller's
    ``__main__`` in every worker: a script without an ``if __name__ == "__main__"`` guard
    then recurses and the pool breaks, and code read from stdin cannot start workers at
    all. Forking has its own hazard, thread pools that do not survive into the child:
    OpenCV's (a forked worker hung in ``cv2.setNumThreads`` joining threads that exist
    only in the parent, observed), hence :func:`_single_threaded_cv2` before forking; and
    torch's OpenMP pool, which the workers never use (they run numpy, scipy, skimage and
    single-threaded OpenCV code only). Torch's own DataLoader forks the same way.
    """
    _single_threaded_cv2()
    return multiprocessing.get_context("fork")


def _worker_pool(workers: int) -> cf.ProcessPoolExecutor:
    """The process pool of ``workers`` workers, started on first use and kept for later
    calls (see :func:`shutdown_workers`); a pool inherited through ``fork`` is replaced."""
    with _POOL_LOCK:
        entry = _POOLS.get(workers)
        if entry is None or entry[0] != os.getpid():
            pool = cf.ProcessPoolExecutor(workers, _pool_context())
            entry = _POOLS[workers] = (os.getpid(), pool)
        return entry[1]


def shutdown_workers() -> None:
    """Stop the kept pool worker processes (they are also stopped at interpreter exit)."""
    with _POOL_LOCK:
        pools = [pool for pid, pool in _POOLS.values() if pid == os.getpid()]
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def corrupt_many(
    load_image: Callable[[int], np.ndarray],
    image_ids: Sequence[int],
    jobs: Sequence[Job],
    *,
    seed: int,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[Job, Images]:
    """Every image corrupted by every ``(corruption, severity)`` job: ``{job: {id: image}}``.

    Images are loaded in this process (``load_image`` is called once per image) and sent
    to ``workers`` processes in chunks; ``workers`` defaults to one per usable CPU, at most
    one per chunk; ``workers=1`` runs in this process. Results do not depend on ``workers``.
    The worker processes are kept for later calls (:func:`shutdown_workers` stops them).
    """
    jobs = _unique_jobs(jobs)
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    plan = _plan(ids, jobs)
    workers = min(_cpus(), len(plan)) if workers is None else workers
    results: dict[Job, Images] = {job: {} for job in jobs}
    report = _Progress(len(ids) * len(jobs), progress)
    names = list(dict.fromkeys(name for name, _ in jobs))
    chunks = _chunks(plan, lambda i: require_corruptible(load_image(i), i, names), seed)
    if workers <= 1 or len(plan) <= 1:
        for chunk in chunks:
            _collect(results, chunk, _corrupt_chunk(chunk), report)
    else:
        _run_pool(chunks, workers, results, report)
    return {job: {i: results[job][i] for i in ids} for job in jobs}


def require_corruptible(image: np.ndarray, image_id: int, names: Sequence[str]) -> np.ndarray:
    """``image``, or a one-line ``CheckError`` (field ``corruptions``) when a side is under
    32 px: imagecorruptions refuses such images in every corruption, and the error would
    otherwise surface as a traceback from a worker process."""
    shape = getattr(image, "shape", ())
    if len(shape) < 2 or min(shape[:2]) >= _MIN_SIDE:
        return image
    many = len(names) != 1
    raise CheckError(
        f"image {image_id} is {shape[1]}x{shape[0]} px, but corruption{'s' * many} "
        f"{', '.join(names)} need{'' if many else 's'} at least {_MIN_SIDE} px per side "
        "(imagecorruptions)",
        field="corruptions",
        hint=f"resize the images with data.transform (e.g. {{resize: {_MIN_SIDE}}}), or drop "
        f"this check's corruptions: every imagecorruptions corruption needs {_MIN_SIDE} px",
    )


def _cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _unique_jobs(jobs: Iterable[Job]) -> list[Job]:
    out = list(dict.fromkeys((str(name), int(sev)) for name, sev in jobs))
    for name, sev in out:
        _check_job(name, sev)
    return out


def _plan(ids: list[int], jobs: list[Job]) -> list[list[tuple[str, int, int]]]:
    """Units ordered image by image, cut into chunks of ``_CHUNK_UNITS``: each image is
    sent to about one worker, and every chunk mixes cheap and expensive corruptions."""
    units = [(name, sev, i) for i in ids for name, sev in jobs]
    return [units[k : k + _CHUNK_UNITS] for k in range(0, len(units), _CHUNK_UNITS)]


def _chunks(
    plan: list[list[tuple[str, int, int]]], load_image: Callable[[int], np.ndarray], seed: int
) -> Iterator[_Chunk]:
    """Chunks with their images, loaded lazily (each image once, dropped when done)."""
    loaded: dict[int, np.ndarray] = {}
    for units in plan:
        needed = list(dict.fromkeys(i for _, _, i in units))
        for i in list(loaded):
            if i not in needed:
                del loaded[i]
        for i in needed:
            if i not in loaded:
                loaded[i] = load_image(i)
        yield _Chunk(seed, {i: loaded[i] for i in needed}, units)


def _run_pool(
    chunks: Iterator[_Chunk], workers: int, results: dict[Job, Images], report: _Progress
) -> None:
    """Submit chunks while at most ``_IN_FLIGHT_PER_WORKER`` per worker are pending."""
    pool = _worker_pool(workers)
    limit = workers * _IN_FLIGHT_PER_WORKER
    pending: dict[cf.Future[list[np.ndarray]], _Chunk] = {}
    try:
        for chunk in chunks:
            pending[pool.submit(_corrupt_chunk, chunk)] = chunk
            if len(pending) >= limit:
                _drain(pending, results, report, cf.FIRST_COMPLETED)
        _drain(pending, results, report, cf.ALL_COMPLETED)
    except BaseException as exc:
        for future in pending:
            future.cancel()
        if isinstance(exc, BrokenProcessPool):  # a worker died: start afresh next time
            with _POOL_LOCK:
                _POOLS.pop(workers, None)
        raise


def _drain(
    pending: dict[cf.Future[list[np.ndarray]], _Chunk],
    results: dict[Job, Images],
    report: _Progress,
    when: str,
) -> None:
    done, _ = cf.wait(pending, return_when=when)
    for future in done:
        _collect(results, pending.pop(future), future.result(), report)


def _collect(
    results: dict[Job, Images], chunk: _Chunk, images: list[np.ndarray], report: _Progress
) -> None:
    for (name, sev, i), image in zip(chunk.units, images, strict=True):
        results[(name, sev)][i] = image
    report.advance(len(images))


class _Progress:
    """Reports ``done/total`` about every 10 percent."""

    def __init__(self, total: int, sink: Callable[[str], None] | None) -> None:
        self.total, self.sink, self.done, self.next = total, sink, 0, 0.0

    def advance(self, n: int) -> None:
        self.done += n
        fraction = self.done / self.total
        if self.sink is not None and (fraction >= self.next or self.done == self.total):
            self.sink(f"corrupting images: {self.done}/{self.total}")
            self.next = fraction + 0.1


# ------------------------------------------------------------------------ cache


@functools.cache
def imagecorruptions_version() -> str:
    """The installed imagecorruptions distribution's version (part of every cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("imagecorruptions-imaug", "imagecorruptions"):
        with contextlib.suppress(PackageNotFoundError):
            return f"{dist}=={version(dist)}"
    return "imagecorruptions==unknown"


def corrupted_images(
    cache: Cache,
    data: CorruptionData,
    name: str,
    severity: int,
    *,
    seed: int,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Mapping[int, np.ndarray]:
    """``{image id: corrupted image}`` of ``data`` for one corruption, from the cache."""
    sets = corrupted_sets(
        cache, data, [(name, severity)], seed=seed, workers=workers, progress=progress
    )
    return sets[(name, int(severity))]


def corrupted_sets(
    cache: Cache,
    data: CorruptionData,
    jobs: Sequence[Job],
    *,
    seed: int,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[Job, Mapping[int, np.ndarray]]:
    """``{(corruption, severity): {image id: image}}``, each set read from the cache one
    image at a time (``StoredImages``); missing sets are generated in one parallel pass
    (:func:`corrupt_many`) and stored as cache entries of kind ``corrupt`` (one
    ``images.safetensors`` of PNG bytes per set)."""
    jobs = _unique_jobs(jobs)
    ids = list(data.image_ids)
    if not ids:
        return {job: {} for job in jobs}
    keys = {job: _set_key(data.fingerprint, ids, job, seed) for job in jobs}
    found: dict[Job, Mapping[int, np.ndarray]] = {}
    for job, key in keys.items():
        entry = cache.get("corrupt", key)
        if entry is not None:
            found[job] = StoredImages(entry.file(_FILE), ids)
    missing = [job for job in jobs if job not in found]
    if missing:
        made = corrupt_many(
            data.load_image, ids, missing, seed=seed, workers=workers, progress=progress
        )
        for job in missing:
            build = _writer(made.pop(job), job, seed, data)  # stored, then freed
            entry, _ = cache.get_or_build("corrupt", keys[job], build)
            found[job] = StoredImages(entry.file(_FILE), ids)
    return {job: found[job] for job in jobs}


def _set_key(fingerprint: str, ids: list[int], job: Job, seed: int) -> str:
    from robustness_harness.store.cache import cache_key

    name, sev = job
    version = imagecorruptions_version()
    return cache_key("corrupt", fingerprint, ids, name, sev, seed, version, _FORMAT)


def _writer(images: Images, job: Job, seed: int, data: CorruptionData) -> Callable[[Path], dict]:
    """The cache build function storing one set."""

    def build(tmp_dir: Path) -> dict:
        from safetensors.numpy import save_file

        save_file({str(i): encode_png(img) for i, img in images.items()}, str(tmp_dir / _FILE))
        return {
            "corruption": job[0],
            "severity": job[1],
            "seed": seed,
            "images": len(images),
            "data": data.fingerprint,
            "imagecorruptions": imagecorruptions_version(),
        }

    return build


class StoredImages(Mapping[int, np.ndarray]):
    """A cached corrupted set: ``{image id: uint8 image}``, each image read from the
    file and decoded when asked for, so one image of the set is in memory at a time."""

    def __init__(self, path: Path, ids: list[int]) -> None:
        self.path = path
        self._ids = list(ids)
        self._known = set(self._ids)
        self._file: Any = None  # opened on first use: reopening parses the header each time

    def __getitem__(self, image_id: int) -> np.ndarray:
        from safetensors import safe_open

        if image_id not in self._known:
            raise KeyError(image_id)
        if self._file is None:
            self._file = safe_open(str(self.path), "numpy")
        return decode_png(self._file.get_tensor(str(image_id)))

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def encode_png(image: np.ndarray) -> np.ndarray:
    """``image`` (uint8, H×W or H×W×C) as PNG bytes in a uint8 array (lossless)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="PNG", compress_level=_PNG_LEVEL)
    return np.frombuffer(out.getvalue(), np.uint8)


def decode_png(data: np.ndarray) -> np.ndarray:
    """The uint8 image of ``encode_png``'s bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(data.tobytes())) as png:
        return np.asarray(png).copy()
