"""Image reading around inference: the prefetching batch reader and the decoded-image memory."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustness_harness.data.decoded import ENV_VAR, DecodedImages, budget_bytes
from robustness_harness.errors import DataError, HarnessError
from robustness_harness.inference.evaluate import image_batches


def _image(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def test_batches_keep_order_and_sizes() -> None:
    ids = list(range(10, 21))
    batches = list(image_batches(ids, 4, lambda i: _image(i)))
    assert [chunk for chunk, _ in batches] == [ids[0:4], ids[4:8], ids[8:11]]
    assert [int(a[0, 0, 0]) for _, arrays in batches for a in arrays] == ids


def test_next_batch_is_read_while_the_caller_works() -> None:
    """Batch k+1 is read in the reader thread while the caller still holds batch k."""
    readers: dict[int, str] = {}
    last_read = threading.Event()

    def load(image_id: int) -> np.ndarray:
        readers[image_id] = threading.current_thread().name
        if image_id == 4:
            last_read.set()
        return _image(image_id)

    batches = image_batches([1, 2, 3, 4], 2, load)
    next(batches)
    assert last_read.wait(timeout=60), "the second batch was not read ahead"
    assert all(name.startswith("harness-read") for name in readers.values())
    assert [chunk for chunk, _ in batches] == [[3, 4]]


def test_error_of_a_background_read_reaches_the_caller() -> None:
    def load(image_id: int) -> np.ndarray:
        if image_id == 5:
            raise DataError("image file of image id 5 is missing", file="x.png", hint="restore it")
        return _image(image_id)

    batches = image_batches(list(range(8)), 3, load)
    assert [chunk for chunk, _ in [next(batches)]] == [[0, 1, 2]]
    with pytest.raises(DataError, match="image id 5 is missing"):
        next(batches)


def test_no_images_no_batches() -> None:
    assert list(image_batches([], 4, _image)) == []


def _png(path: Path, value: int, size: int = 8) -> Path:
    Image.fromarray(_image(value, size)).save(path)
    return path


def _decode(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


def test_each_file_is_decoded_once_and_callers_get_copies(tmp_path: Path) -> None:
    memory = DecodedImages(max_bytes=2**20)
    path = _png(tmp_path / "a.png", 7)
    first = memory.get(path, _decode)
    first[:] = 0  # the caller may write into its array
    second = memory.get(path, _decode)
    assert (memory.misses, memory.hits) == (1, 1)
    assert int(second.max()) == 7 and second.flags.writeable


def test_a_replaced_file_is_decoded_again(tmp_path: Path) -> None:
    memory = DecodedImages(max_bytes=2**20)
    path = _png(tmp_path / "a.png", 7)
    memory.get(path, _decode)
    _png(path, 9, size=9)  # another size: a new key even within one mtime tick
    assert int(memory.get(path, _decode)[0, 0, 0]) == 9
    assert memory.misses == 2


def test_least_recently_used_images_leave_beyond_the_budget(tmp_path: Path) -> None:
    one = 8 * 8 * 3
    memory = DecodedImages(max_bytes=2 * one)
    a, b, c = (_png(tmp_path / f"{n}.png", n) for n in (1, 2, 3))
    memory.get(a, _decode)
    memory.get(b, _decode)
    memory.get(a, _decode)  # a is now the most recent
    memory.get(c, _decode)  # evicts b
    assert memory.nbytes == 2 * one
    memory.get(a, _decode)
    memory.get(b, _decode)
    assert (memory.hits, memory.misses) == (2, 4)


def test_budget_zero_decodes_every_time(tmp_path: Path) -> None:
    memory = DecodedImages(max_bytes=0)
    path = _png(tmp_path / "a.png", 7)
    memory.get(path, _decode)
    memory.get(path, _decode)
    assert memory.nbytes == 0 and memory.hits == 0


def test_missing_file_is_not_remembered(tmp_path: Path) -> None:
    memory = DecodedImages(max_bytes=2**20)
    with pytest.raises(FileNotFoundError):
        memory.get(tmp_path / "gone.png", _decode)
    assert memory.nbytes == 0


@pytest.mark.parametrize(("raw", "expected"), [("", 512 * 2**20), ("0", 0), ("1.5", 1572864)])
def test_budget_from_environment(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int) -> None:
    monkeypatch.setenv(ENV_VAR, raw)
    assert budget_bytes() == expected


@pytest.mark.parametrize("raw", ["lots", "-1", "nan"])
def test_bad_budget_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(ENV_VAR, raw)
    with pytest.raises(HarnessError) as info:
        budget_bytes()
    message = str(info.value)
    assert ENV_VAR in message and "fix:" in message and "\n" not in message
