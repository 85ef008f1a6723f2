"""model.input (a module in front of the model) and data.transform (on the decoded image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as photos
from torchvision import transforms as T

from robustness_harness.data.transform import ImageTransform
from robustness_harness.errors import HarnessError, ModelInputError, ModelOutputError, SpecError
from robustness_harness.inference.input_contract import (
    Contract,
    DetectorInputContract,
    InputContract,
)
from robustness_harness.run.session import HarnessOptions, HarnessSession
from robustness_harness.suite.loader import parse_suite
from tests.real_models.coco import Picture, write_coco
from tests.real_models.factories import tiny_classifier

TINY = "tests.real_models.factories:tiny_classifier"
IMAGENET = Contract(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _pictures(sizes: list[tuple[int, int]]) -> list[Picture]:
    rng = np.random.default_rng(0)
    return [
        Picture(f"im{i}", rng.integers(0, 255, (h, w, 3), dtype=np.uint8), 1 + i % 2)
        for i, (h, w) in enumerate(sizes)
    ]


ALL_VARIANTS = """\
  l1: {compress: [{prune: {method: l1_filter, sparsity: 0.5}}]}
  magnitude: {compress: [{prune: {method: global_magnitude, sparsity: 0.5}}]}
  int8: {compress: [{quantize: {method: ptq_int8, calibration_images: 4}}]}
"""


def _suite_text(
    coco: dict[str, Path],
    model: str,
    data_extra: str = "",
    variants: str = ALL_VARIANTS,
    check: str = "{metric: accuracy, min: 0}",
) -> str:
    """A suite on ``coco`` (also its calibration set) with a dense baseline, ``variants``
    and one check ``c``."""
    source = f"{{images: {coco['images']}, annotations: {coco['annotations']}}}"
    return f"""
suite: contract
model: {model}
data: {{coco: {source}, calibration: {source}{data_extra}}}
baseline: dense
variants:
  dense: {{}}
{variants}
checks:
  c: {check}
"""


@pytest.fixture
def coco(tmp_path: Path) -> dict[str, Path]:
    """Six random 40×48 images in two classes."""
    return write_coco(tmp_path / "data", _pictures([(40, 48)] * 6), {1: "a", 2: "b"})


def _session(tmp_path: Path) -> HarnessSession:
    options = HarnessOptions(cache_dir=str(tmp_path / "cache"), device="cpu")
    return HarnessSession(options, progress=lambda _: None)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def _weights(tmp_path: Path, in_channels: int = 3, classes: int = 2) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.save(tiny_classifier(classes, in_channels).state_dict(), path)
    return path


# -- the module -----------------------------------------------------------------------------


def test_smoke_normalize_grayscale_size() -> None:
    inner = torch.nn.Identity()
    x = torch.rand(2, 3, 10, 12)
    assert torch.allclose(
        InputContract(inner, IMAGENET)(x), T.Normalize(IMAGENET.mean, IMAGENET.std)(x)
    )
    gray = InputContract(inner, Contract(grayscale=True))(x)
    assert torch.allclose(gray, T.Grayscale()(x), atol=1e-6)
    resized = InputContract(inner, Contract(size=(5, 7)))(x)
    assert resized.shape == (2, 3, 5, 7)
    # classifiers with size take images of mixed sizes as a list
    mixed = [torch.rand(3, 9, 9), torch.rand(3, 20, 11)]
    assert InputContract(inner, Contract(size=(5, 7)))(mixed).shape == (2, 3, 5, 7)


def test_state_dict_is_the_inner_one_with_a_prefix() -> None:
    inner = tiny_classifier(2)
    wrapped = InputContract(inner, IMAGENET)
    assert list(wrapped.state_dict()) == [f"model.{k}" for k in inner.state_dict()]


def test_detector_list_input_is_converted_per_image() -> None:
    seen: list[torch.Tensor] = []

    class Recorder(torch.nn.Module):
        def forward(self, images: list[torch.Tensor], targets: object = None) -> list[dict]:
            seen.extend(images)
            return [{} for _ in images]

    images = [torch.ones(3, 4, 5), torch.ones(3, 6, 2)]
    DetectorInputContract(Recorder(), Contract(mean=(0.0,) * 3, std=(0.5,) * 3))(images)
    assert [t.shape for t in seen] == [(3, 4, 5), (3, 6, 2)]
    assert all(bool((t == 2).all()) for t in seen)


# -- data.transform -------------------------------------------------------------------------


@pytest.mark.parametrize("photo", ["chelsea", "coffee", "astronaut"])
def test_transform_equals_torchvision(photo: str) -> None:
    image = getattr(photos, photo)()
    expected = T.Compose([T.Resize(256), T.CenterCrop(224)])(Image.fromarray(image))
    assert np.array_equal(ImageTransform(256, 224)(image), np.asarray(expected))


def test_transform_applies_and_enters_the_fingerprint(tmp_path: Path, coco) -> None:
    model = f"{{factory: '{TINY}', task: classification}}"
    session = _session(tmp_path)
    plain = session.dataset(parse_suite(_suite_text(coco, model), tmp_path / "a.yaml"))
    text = _suite_text(coco, model, ", transform: {resize: 20, center_crop: 16}")
    data = session.dataset(parse_suite(text, tmp_path / "b.yaml"))
    assert plain.load_image(plain.image_ids[0]).shape == (40, 48, 3)
    assert data.load_image(data.image_ids[0]).shape == (16, 16, 3)
    assert data.limit(2).load_image(data.image_ids[0]).shape == (16, 16, 3)
    assert data.fingerprint != plain.fingerprint


# -- validation at load ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_input", "expected"),
    [
        ("{normalize: imagnet}", "model.input.normalize: normalize 'imagnet' is not implemented"),
        (
            "{normalize: {mean: [0, 0, 0], std: [1, 0, 1]}}",
            "model.input.normalize.std[1]: std 0.0 is not positive",
        ),
        ("{normalize: {mean: [0, 0], std: [1, 1]}}", "model.input.normalize: normalize has 2"),
        ("{normalize: imagenet, grayscale: true}", "model.input.normalize: normalize has 3"),
        ("{size: [224, -3]}", "model.input.size[1]: size [224, -3] has a side -3"),
        ("{size: [224]}", "model.input.size"),
        ("{normalise: imagenet}", "did you mean 'normalize'"),
    ],
)
def test_exception_bad_input_values(model_input: str, expected: str, coco) -> None:
    text = _suite_text(coco, f"{{factory: '{TINY}', task: classification, input: {model_input}}}")
    with pytest.raises(SpecError) as info:
        parse_suite(text)
    message = str(info.value)
    assert expected in message and "\n" not in message, message
    if "imagnet" in model_input:
        assert "did you mean 'imagenet'" in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (", transform: {resize: 0}", "data.transform.resize"),
        (", transform: {center_crop: -1}", "data.transform.center_crop"),
        (", transform: {}", "the transform is empty"),
        (", transform: {resize: 8, center_crops: 8}", "did you mean 'center_crop'"),
    ],
)
def test_exception_bad_transform(extra: str, expected: str, coco) -> None:
    model = f"{{factory: '{TINY}', task: classification}}"
    with pytest.raises(SpecError, match=expected):
        parse_suite(_suite_text(coco, model, extra))


def test_exception_detector_size_and_transform(coco) -> None:
    checks = {"check": "{metric: map, min: 0}", "variants": ""}
    sized = "{factory: 'a.b:c', task: detection, input: {size: [8, 8]}}"
    with pytest.raises(SpecError, match=r"model.input.size: input.size is not supported for det"):
        parse_suite(_suite_text(coco, sized, **checks))
    plain = "{factory: 'a.b:c', task: detection, input: {normalize: imagenet}}"
    with pytest.raises(SpecError, match=r"data.transform: data.transform applies to classif"):
        parse_suite(_suite_text(coco, plain, ", transform: {resize: 8}", **checks))


def test_exception_factory_without_task_hint_names_the_task(coco) -> None:
    with pytest.raises(SpecError) as info:
        parse_suite(_suite_text(coco, f"{{factory: '{TINY}'}}"))
    assert "set model.task: classification first" in str(info.value)


# -- running -------------------------------------------------------------------------------


def test_exception_mixed_sizes_name_the_file_and_the_fix(tmp_path: Path) -> None:
    coco = write_coco(tmp_path / "data", _pictures([(30, 45), (40, 60)]), {1: "a", 2: "b"})
    model = f"{{factory: '{TINY}', task: classification, checkpoint: {_weights(tmp_path)}}}"
    session = _session(tmp_path)
    suite = session.suite(_write(tmp_path, _suite_text(coco, model)))
    with pytest.raises(ModelInputError) as info:
        session.predictions(suite, "dense")
    message = str(info.value)
    assert "im1.png" in message and "images have sizes 30×45 and 40×60" in message
    assert "data.transform: {resize: 224, center_crop: 224} or model.input.size" in message
    # either fix makes them one batch
    for fix_model, fix_data in [
        (model.replace("}", ", input: {size: [32, 32]}}"), ""),
        (model, ", transform: {resize: 32, center_crop: 32}"),
    ]:
        fixed = tmp_path / f"fixed{len(fix_data)}"
        fixed.mkdir()
        suite = _session(fixed).suite(_write(fixed, _suite_text(coco, fix_model, fix_data)))
        assert len(_session(fixed).predictions(suite, "dense").image_ids) == 2


def test_exception_classifier_declared_detector(tmp_path: Path, coco) -> None:
    weights = _weights(tmp_path, classes=3)  # num_classes: 2 categories + background
    model = f"{{factory: '{TINY}', task: detection, checkpoint: {weights}}}"
    text = _suite_text(coco, model, variants="", check="{metric: map, min: 0}")
    session = _session(tmp_path)
    suite = session.suite(_write(tmp_path, text))
    with pytest.raises(ModelOutputError) as info:
        session.predictions(suite, "dense")
    assert "model returned a (6, 3) tensor: it is a classifier" in str(info.value)
    assert "set model.task: classification" in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_input",
    [
        "{normalize: imagenet}",
        "{grayscale: true, normalize: {mean: [0.5], std: [0.25]}, size: [32, 32]}",
    ],
)
def test_compression_and_reload_with_the_wrapper(tmp_path: Path, coco, model_input: str) -> None:
    channels = 1 if "grayscale" in model_input else 3
    kwargs = f", kwargs: {{in_channels: {channels}}}"
    model = (
        f"{{factory: '{TINY}', task: classification, checkpoint: {_weights(tmp_path, channels)}, "
        f"input: {model_input}{kwargs}}}"
    )
    path = _write(tmp_path, _suite_text(coco, model))
    session = _session(tmp_path)
    suite = session.suite(path)
    dense = session.model(suite, "dense")
    assert isinstance(dense, InputContract)
    logits = {v: session.predictions(suite, v).logits for v in ("dense", "l1", "magnitude", "int8")}
    assert np.argmax(logits["int8"], 1).tolist() == np.argmax(logits["dense"], 1).tolist()
    assert session.model(suite, "l1").model[0].out_channels == 4  # filters physically removed
    again = _session(tmp_path)
    for variant in ("l1", "magnitude", "int8"):
        reloaded = again.model(again.suite(path), variant)
        batch = torch.rand(2, 3, 40, 48)
        assert torch.allclose(reloaded(batch), session.model(suite, variant)(batch), atol=1e-5)


def test_exception_checkpoint_loads_into_the_inner_model(tmp_path: Path, coco) -> None:
    torch.save(InputContract(tiny_classifier(2), IMAGENET).state_dict(), tmp_path / "wrapped.pt")
    model = (
        f"{{factory: '{TINY}', task: classification, checkpoint: wrapped.pt, "
        "input: {normalize: imagenet}}"
    )
    session = _session(tmp_path)
    suite = session.suite(_write(tmp_path, _suite_text(coco, model)))
    with pytest.raises(HarnessError, match=r"model\.0\.weight"):
        session.model(suite, "dense")
