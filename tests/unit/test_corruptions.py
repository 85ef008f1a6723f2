"""Corruptions: every corruption's output, seeding, RNG hygiene, parallel runs, the cache.

The reference is imagecorruptions itself: ``corrupt(image, severity, name)`` after
``np.random.seed(s)`` (and ``seed=s`` for the two corruptions that take a seed argument).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import imagecorruptions
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import robustness_harness.perturb.corruptions as hc
from robustness_harness.perturb.corruptions import (
    ALL,
    BENCHMARK,
    DETERMINISTIC,
    FAMILIES,
    SEVERITIES,
    check_severities,
    corrupt_image,
    corrupt_many,
    corrupted_images,
    corrupted_sets,
    corruption_seed,
    family_of,
    resolve_corruptions,
)
from robustness_harness.store.cache import Cache
from robustness_harness.suite.problems import SpecProblem

SIZES = (32, 128)
SEED_ARGUMENT = {"impulse_noise", "glass_blur"}

# Severity tables of imagecorruptions 1.1.5 under which the mean absolute pixel change
# does not grow with severity (measured on smooth synthetic scenes):
NOT_MONOTONE = {
    "glass_blur": "iterations per severity are 2, 1, 3, 2, 2",
    "saturate": "severities 1-2 desaturate (x0.3, x0.1), 3-5 oversaturate (x2, x5, x20)",
    "frost": "the image is dimmed (x1.0..x0.6) while a random one of six frost images is "
    "blended in (x0.4..x0.75): which frost image is drawn dominates the change",
    "snow": "severities 2 and 3 change mean, threshold and zoom of the snow layer in "
    "opposite directions",
    "motion_blur": "severities 3 and 4 differ only in the kernel's sigma (8 vs 12) at "
    "radius 15; the random angle dominates over a few images",
}


def scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth RGB scene: a sinusoidal background per channel and three flat squares."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for c in range(3):
        a, b, phase = rng.uniform(0.5, 3, 3)
        img[..., c] = 0.5 + 0.3 * np.sin(2 * np.pi * (a * x + b * y) + phase)
    side = size // 4
    for _ in range(3):
        x0, y0 = rng.integers(0, size - side, 2)
        img[y0 : y0 + side, x0 : x0 + side] = rng.uniform(0, 1, 3)
    return (img * 255).clip(0, 255).astype(np.uint8)


def scenes(size: int, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [scene(rng, size) for _ in range(n)]


def library_corrupt(image: np.ndarray, name: str, severity: int, s: int) -> np.ndarray:
    """The reference: the library's own ``corrupt`` after seeding numpy's global RNG."""
    state = np.random.get_state()
    try:
        np.random.seed(s)
        kwargs = {"seed": s} if name in SEED_ARGUMENT else {}
        return imagecorruptions.corrupt(image, severity, name, **kwargs)
    finally:
        np.random.set_state(state)


@pytest.fixture(scope="module")
def images() -> dict[int, np.ndarray]:
    return {size: scenes(size, 1, seed=size)[0] for size in SIZES}


# ------------------------------------------------------------------- names


def test_families_match_the_library() -> None:
    names = imagecorruptions.get_corruption_names
    for family in ("noise", "blur", "weather", "digital"):
        assert list(FAMILIES[family]) == names(family)
    assert list(FAMILIES["extra"]) == names("validation")
    assert list(BENCHMARK) == names("common")
    assert list(ALL) == names("all")
    assert len(BENCHMARK) == 15 and len(ALL) == 19
    assert SEVERITIES == (1, 2, 3, 4, 5)
    assert family_of("fog") == "weather" and family_of("spatter") == "extra"
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        family_of("rain")


def test_resolve_groups_names_and_lists() -> None:
    assert resolve_corruptions("benchmark") == list(BENCHMARK)
    assert resolve_corruptions("all") == list(ALL)
    assert resolve_corruptions("blur") == list(FAMILIES["blur"])
    assert resolve_corruptions("fog") == ["fog"]
    assert resolve_corruptions(["fog", "noise", "gaussian_noise", "extra", "fog"]) == [
        "fog",
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "speckle_noise",
        "gaussian_blur",
        "spatter",
        "saturate",
    ]
    assert resolve_corruptions(("weather", "all")) == list(FAMILIES["weather"]) + [
        c for c in ALL if c not in FAMILIES["weather"]
    ]


def test_resolve_unknown_names_say_what_was_meant() -> None:
    with pytest.raises(SpecProblem) as err:
        resolve_corruptions("gausian_noise")
    assert err.value.message == "unknown corruption 'gausian_noise'"
    assert err.value.hint.startswith("did you mean 'gaussian_noise'? valid: benchmark, all, noise")
    assert "saturate" in err.value.hint and err.value.unknown
    with pytest.raises(SpecProblem) as err:
        resolve_corruptions(["fog", "digtal"])
    assert err.value.loc == (1,) and "did you mean 'digital'?" in err.value.hint
    with pytest.raises(SpecProblem) as err:
        resolve_corruptions(["fog", 3])  # type: ignore[list-item]
    assert err.value.loc == (1,) and "expected a corruption name, got 3" in err.value.message
    with pytest.raises(SpecProblem, match="non-empty list"):
        resolve_corruptions([])


def test_check_severities() -> None:
    assert check_severities([5, 1, 3, 3]) == [1, 3, 5]
    assert check_severities(2) == [2]
    for bad in ([0], [6], [3.0], ["3"], [True], [1, None]):
        with pytest.raises(SpecProblem, match="whole number from 1 to 5") as err:
            check_severities(bad)  # type: ignore[arg-type]
        assert err.value.loc == (len(bad) - 1,)
    with pytest.raises(SpecProblem, match="at least one severity"):
        check_severities([])
    with pytest.raises(SpecProblem, match="expected a list of severities"):
        check_severities("3")  # type: ignore[arg-type]


def test_corruption_seed_is_stable_and_32_bit() -> None:
    assert corruption_seed(0, 1, "fog", 3) == 3976495588  # sha256 of '[0, 1, "fog", 3]'
    seeds = {
        corruption_seed(*args)
        for args in [
            (0, 1, "fog", 3),
            (1, 1, "fog", 3),
            (0, 2, "fog", 3),
            (0, 1, "snow", 3),
            (0, 1, "fog", 4),
        ]
    }
    assert len(seeds) == 5 and all(0 <= s < 2**32 for s in seeds)


# --------------------------------------------------------------- one image


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ALL)
def test_each_corruption_output_and_seeding(
    name: str, size: int, images: dict[int, np.ndarray]
) -> None:
    image = images[size]
    before = image.copy()
    out = corrupt_image(image, name, 3, seed=0, image_id=7)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out.flags.c_contiguous and out.flags.writeable and not np.shares_memory(out, image)
    assert np.array_equal(image, before), "the input must not be modified"
    assert not np.array_equal(out, image), "severity 3 must change the image"
    assert np.array_equal(out, corrupt_image(image, name, 3, seed=0, image_id=7))
    other_seed = corrupt_image(image, name, 3, seed=1, image_id=7)
    other_image = corrupt_image(image, name, 3, seed=0, image_id=8)
    if name in DETERMINISTIC:
        assert np.array_equal(out, other_seed) and np.array_equal(out, other_image)
    else:
        assert not np.array_equal(out, other_seed) and not np.array_equal(out, other_image)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ALL)
def test_equals_the_library(name: str, size: int, images: dict[int, np.ndarray]) -> None:
    for image_id in (0, 1):
        s = corruption_seed(5, image_id, name, 3)
        expected = library_corrupt(images[size], name, 3, s)
        assert np.array_equal(
            corrupt_image(images[size], name, 3, seed=5, image_id=image_id), expected
        )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(ALL),
    severity=st.sampled_from(SEVERITIES),
    seed=st.integers(0, 2**40),
    image_id=st.integers(0, 10**9),
    shape=st.tuples(st.integers(32, 70), st.integers(32, 70)),
)
def test_equals_the_library_for_any_arguments(
    name: str, severity: int, seed: int, image_id: int, shape: tuple[int, int]
) -> None:
    image = np.random.default_rng(image_id).integers(0, 256, (*shape, 3), dtype=np.uint8)
    s = corruption_seed(seed, image_id, name, severity)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = library_corrupt(image, name, severity, s)
    assume(not caught)  # the library's NaN case (spatter without liquid): see below
    assert np.array_equal(
        corrupt_image(image, name, severity, seed=seed, image_id=image_id), expected
    )


def test_spatter_without_liquid_keeps_the_image() -> None:
    """imagecorruptions divides 0 by 0 when no liquid lands on a small image and casts
    the NaNs to uint8; we keep the clean pixels instead."""
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    fn = imagecorruptions.corruption_dict["spatter"]
    for image_id in range(400):
        np.random.seed(corruption_seed(0, image_id, "spatter", 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            raw = np.asarray(fn(Image.fromarray(image), 1))
        if np.isnan(raw).any():
            break
    else:
        pytest.fail("no image id gave the library's NaN case")
    out = corrupt_image(image, "spatter", 1, seed=0, image_id=image_id)
    assert np.array_equal(out[np.isnan(raw)].reshape(-1), image[np.isnan(raw)].reshape(-1))


def test_deterministic_corruptions_are_those_that_ignore_the_seed(
    images: dict[int, np.ndarray],
) -> None:
    """Derived from the library: its output does not depend on the RNG seed."""
    image = images[32]
    ignore_seed = {
        name
        for name in ALL
        if np.array_equal(library_corrupt(image, name, 3, 1), library_corrupt(image, name, 3, 2))
    }
    assert ignore_seed == DETERMINISTIC


def test_seed_argument_is_needed_for_impulse_noise_and_glass_blur(
    images: dict[int, np.ndarray],
) -> None:
    """Without ``seed=`` these two draw OS entropy: np.random.seed does not fix them."""
    for name in SEED_ARGUMENT:
        outs = []
        for _ in range(2):
            np.random.seed(0)
            outs.append(imagecorruptions.corrupt(images[32], 3, name))
        assert not np.array_equal(*outs)


def _mean_change(name: str, severity: int, imgs: list[np.ndarray]) -> float:
    changes = [
        np.abs(corrupt_image(img, name, severity, seed=0, image_id=i).astype(float) - img).mean()
        for i, img in enumerate(imgs)
    ]
    return float(np.mean(changes))


@pytest.fixture(scope="module")
def monotone_scenes() -> dict[int, list[np.ndarray]]:
    return {32: scenes(32, 16), 128: scenes(128, 8)}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ALL)
def test_severity_increases_the_change(
    name: str, size: int, monotone_scenes: dict[int, list[np.ndarray]]
) -> None:
    change = [_mean_change(name, s, monotone_scenes[size]) for s in SEVERITIES]
    assert min(change) > 0
    if name in NOT_MONOTONE:  # documented above; severity still matters
        assert max(change[1:]) > change[0]
    else:
        assert change == sorted(change), f"{name}: mean |change| per severity {change}"


def _rng_states() -> tuple[object, object]:
    return np.random.get_state(legacy=False), random.getstate()


def _assert_same_states(a: tuple[object, object], b: tuple[object, object]) -> None:
    assert json.dumps(a[0], default=lambda x: x.tolist()) == json.dumps(
        b[0], default=lambda x: x.tolist()
    )
    assert a[1] == b[1]


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "glass_blur", "frost"])
def test_global_rng_states_are_restored(name: str, images: dict[int, np.ndarray]) -> None:
    np.random.seed(123)
    random.seed(456)
    before = _rng_states()
    corrupt_image(images[32], name, 2, seed=0, image_id=1)
    _assert_same_states(before, _rng_states())


def test_global_rng_states_are_restored_when_the_corruption_raises(
    monkeypatch: pytest.MonkeyPatch, images: dict[int, np.ndarray]
) -> None:
    def boom(image: object, severity: int) -> None:
        np.random.rand(10)
        random.random()
        raise RuntimeError("boom")

    monkeypatch.setitem(imagecorruptions.corruption_dict, "gaussian_noise", boom)
    np.random.seed(1)
    random.seed(2)
    before = _rng_states()
    with pytest.raises(RuntimeError, match="boom"):
        corrupt_image(images[32], "gaussian_noise", 1, seed=0, image_id=0)
    _assert_same_states(before, _rng_states())


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((32, 32), np.uint8), "got grayscale shape \\(32, 32\\)"),
        (np.zeros((32, 32, 1), np.uint8), "got grayscale shape \\(32, 32, 1\\)"),
        (np.zeros((32, 32, 4), np.uint8), "got RGBA shape \\(32, 32, 4\\) \\(convert it to RGB"),
        (np.zeros((32, 32, 3), np.float32), "got dtype float32"),
        (np.zeros((31, 64, 3), np.uint8), "got shape \\(31, 64, 3\\)"),
        ([[0]], "got list"),
    ],
)
def test_bad_images_are_rejected(image: object, message: str) -> None:
    with pytest.raises(ValueError, match=r"need a uint8 array of shape \(H, W, 3\).*" + message):
        corrupt_image(image, "fog", 1, seed=0, image_id=0)  # type: ignore[arg-type]


def test_bad_names_and_severities_are_rejected(images: dict[int, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="unknown corruption 'fgo'; did you mean 'fog'"):
        corrupt_image(images[32], "fgo", 1, seed=0, image_id=0)
    for severity in (0, 6, 3.0, True):
        with pytest.raises(ValueError, match="severity must be an int from 1 to 5"):
            corrupt_image(images[32], "fog", severity, seed=0, image_id=0)  # type: ignore[arg-type]


def test_results_are_fixed_up_to_uint8_of_the_input_shape() -> None:
    image = np.full((4, 5, 3), 7, np.uint8)
    raw = np.full((4, 5, 3), 300.0)
    raw[0, 0, 0], raw[1, 1, 1], raw[2, 2, 2] = np.nan, -3.0, 12.9
    out = hc._to_uint8(raw, image)
    assert out.dtype == np.uint8 and out[0, 0, 0] == 7 and out[1, 1, 1] == 0
    assert out[2, 2, 2] == 12 and out[3, 3, 0] == 255  # truncated, as the library casts
    assert hc._to_uint8(np.zeros((4, 5)), image).shape == (4, 5, 3)
    assert hc._to_uint8(np.zeros((6, 7, 3), np.uint8), image).shape == (4, 5, 3)
    assert hc._to_uint8(np.zeros((2, 3, 3)), image).shape == (4, 5, 3)
    assert hc._to_uint8(np.zeros((4, 5, 4), np.uint8), image).shape == (4, 5, 3)


# --------------------------------------------------------------- many images


def test_corrupt_many_is_the_same_with_one_or_two_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hc, "_CHUNK_UNITS", 5)
    imgs = dict(enumerate(scenes(32, 6), start=10))
    jobs = [("gaussian_noise", 2), ("glass_blur", 1), ("frost", 3), ("contrast", 1)]
    messages: list[str] = []
    serial = corrupt_many(imgs.__getitem__, list(imgs), jobs, seed=3, workers=1)
    parallel = corrupt_many(
        imgs.__getitem__, list(imgs), jobs, seed=3, workers=2, progress=messages.append
    )
    assert list(parallel) == jobs and all(list(parallel[j]) == list(imgs) for j in jobs)
    for job in jobs:
        for i, img in imgs.items():
            expected = corrupt_image(img, *job, seed=3, image_id=i)
            assert np.array_equal(serial[job][i], expected)
            assert np.array_equal(parallel[job][i], expected)
    assert messages[-1] == "corrupting images: 24/24"


def test_corrupt_many_loads_each_image_once_and_drops_duplicates() -> None:
    imgs = dict(enumerate(scenes(32, 3)))
    calls: list[int] = []

    def load(i: int) -> np.ndarray:
        calls.append(i)
        return imgs[i]

    out = corrupt_many(load, [2, 0, 2, 1], [("fog", 1), ("fog", 1), ("pixelate", 2)], seed=0)
    assert calls == [2, 0, 1]
    assert list(out) == [("fog", 1), ("pixelate", 2)] and list(out[("fog", 1)]) == [2, 0, 1]


def test_worker_errors_reach_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hc, "_CHUNK_UNITS", 1)
    imgs = {0: scenes(32, 1)[0], 1: np.zeros((32, 32, 3), np.float32)}
    with pytest.raises(ValueError, match=r"got dtype float32"):
        corrupt_many(imgs.__getitem__, [0, 1], [("fog", 1)], seed=0, workers=2)


def test_pool_workers_are_forked_children_and_are_kept() -> None:
    pool = hc._worker_pool(2)
    assert hc._worker_pool(2) is pool
    assert pool.submit(os.getppid).result() == os.getpid()
    hc.shutdown_workers()
    assert hc._worker_pool(2) is not pool


WORKERS_AFTER_OPENCV = """
import numpy as np, torch
from robustness_harness.perturb.corruptions import corrupt_image, corrupt_many
torch.ones(64, 64) @ torch.ones(64, 64)          # torch's thread pool is running
img = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
corrupt_image(img, "motion_blur", 3, seed=0, image_id=0)   # so is OpenCV's
out = corrupt_many(lambda i: img, list(range(8)), [("motion_blur", 3), ("frost", 2)],
                   seed=0, workers=2)
print(len(out), sum(len(v) for v in out.values()))
"""


def test_workers_start_after_opencv_and_torch_ran_here_and_from_stdin() -> None:
    # a forked worker once hung in cv2.setNumThreads; stdin has no __main__ file to re-run
    for args in (["-c", WORKERS_AFTER_OPENCV], ["-"]):
        done = subprocess.run(
            [sys.executable, *args],
            input=WORKERS_AFTER_OPENCV if args == ["-"] else None,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == ["2", "16"]


@pytest.fixture(scope="module", autouse=True)
def _stop_workers() -> Iterator[None]:
    yield
    hc.shutdown_workers()


# -------------------------------------------------------------------- cache


class FakeData:
    """The dataset interface ``corrupted_sets`` needs, counting image loads."""

    def __init__(self, images: dict[int, np.ndarray], fingerprint: str = "fp-1") -> None:
        self.images = images
        self.image_ids = list(images)
        self.fingerprint = fingerprint
        self.loads = 0

    def load_image(self, image_id: int) -> np.ndarray:
        self.loads += 1
        return self.images[image_id]


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache")


@pytest.fixture
def count_corruptions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int, int]]]:
    calls: list[tuple[str, int, int]] = []
    real = hc.corrupt_image

    def counting(image: np.ndarray, name: str, severity: int, **kw: int) -> np.ndarray:
        calls.append((name, severity, kw["image_id"]))
        return real(image, name, severity, **kw)

    monkeypatch.setattr(hc, "corrupt_image", counting)
    yield calls


def test_cache_round_trip_and_warm_calls_do_not_recompute(
    cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = FakeData(dict(enumerate(scenes(32, 3), start=1)))
    jobs = [("shot_noise", 2), ("zoom_blur", 1)]
    cold = corrupted_sets(cache, data, jobs, seed=4, workers=1)
    entries = [e for e in cache.ls() if e.kind == "corrupt"]
    assert len(entries) == 2 and all(set(e.files) == {"images.safetensors"} for e in entries)
    assert {(e.meta["corruption"], e.meta["severity"]) for e in entries} == set(jobs)

    def fail(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("a warm call must not corrupt again")

    monkeypatch.setattr(hc, "corrupt_image", fail)
    loads = data.loads
    warm = corrupted_sets(cache, data, jobs, seed=4)
    assert data.loads == loads
    single = corrupted_images(cache, data, "zoom_blur", 1, seed=4)
    for job in jobs:
        assert list(warm[job]) == [1, 2, 3]
        for i in data.image_ids:
            assert warm[job][i].dtype == np.uint8 and np.array_equal(warm[job][i], cold[job][i])
    assert all(np.array_equal(single[i], cold[("zoom_blur", 1)][i]) for i in data.image_ids)
    monkeypatch.undo()
    expected = corrupt_image(data.images[2], "shot_noise", 2, seed=4, image_id=2)
    assert np.array_equal(warm[("shot_noise", 2)][2], expected)


def test_only_missing_sets_are_generated(
    cache: Cache, count_corruptions: list[tuple[str, int, int]]
) -> None:
    data = FakeData(dict(enumerate(scenes(32, 2))))
    corrupted_images(cache, data, "fog", 2, seed=0, workers=1)
    assert count_corruptions == [("fog", 2, 0), ("fog", 2, 1)]
    count_corruptions.clear()
    corrupted_sets(cache, data, [("fog", 2), ("pixelate", 5)], seed=0, workers=1)
    assert count_corruptions == [("pixelate", 5, 0), ("pixelate", 5, 1)]
    count_corruptions.clear()
    corrupted_images(cache, data, "fog", 2, seed=1, workers=1)  # another seed: another set
    corrupted_images(cache, FakeData(data.images, "fp-2"), "fog", 2, seed=0, workers=1)
    corrupted_images(cache, FakeData({0: data.images[0]}), "fog", 2, seed=0, workers=1)
    assert len(count_corruptions) == 5


def test_an_empty_dataset_gives_empty_sets(cache: Cache) -> None:
    assert corrupted_sets(cache, FakeData({}), [("fog", 1)], seed=0) == {("fog", 1): {}}
    assert corrupt_many(lambda i: np.zeros(1), [], [("fog", 1)], seed=0) == {("fog", 1): {}}


def test_warm_load_of_a_400_image_set_is_exact(
    cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    data = FakeData({i: rng.integers(0, 256, (128, 128, 3), np.uint8) for i in range(400)})
    monkeypatch.setattr(hc, "corrupt_image", lambda image, *a, **k: image)
    corrupted_images(cache, data, "fog", 1, seed=0, workers=1)
    monkeypatch.setattr(hc, "corrupt_image", _must_not_run)
    warm = corrupted_images(cache, data, "fog", 1, seed=0)  # speed: benchmarks/corruptions.py
    assert list(warm) == data.image_ids
    assert all(np.array_equal(warm[i], data.images[i]) for i in data.image_ids)


def _must_not_run(*args: object, **kwargs: object) -> np.ndarray:
    raise AssertionError("a warm load must not corrupt images again")


def test_sets_are_stored_losslessly_compressed_and_read_one_image_at_a_time(
    cache: Cache,
) -> None:
    from safetensors.numpy import load_file

    data = FakeData(dict(enumerate(scenes(64, 4), start=1)))
    jobs = [("gaussian_blur", 3), ("gaussian_noise", 3)]
    sets = corrupted_sets(cache, data, jobs, seed=1, workers=1)
    for job in jobs:
        stored = sets[job]
        assert isinstance(stored, hc.StoredImages) and len(stored) == 4
        for i in data.image_ids:  # lossless: equal to the library's output bit for bit
            want = corrupt_image(data.images[i], *job, seed=1, image_id=i)
            assert np.array_equal(stored[i], want) and stored[i].dtype == np.uint8
        raw = load_file(str(stored.path))
        assert all(bytes(raw[str(i)][:8]) == b"\x89PNG\r\n\x1a\n" for i in data.image_ids)
        with pytest.raises(KeyError):
            stored[99]
    blurred = sets[("gaussian_blur", 3)].path.stat().st_size
    assert blurred < 0.8 * sum(img.nbytes for img in data.images.values())
