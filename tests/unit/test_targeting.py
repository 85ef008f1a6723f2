"""``modules:`` on prune steps (issue 17 part 3): a cascade's networks or a model's
backbone are compressed as parts, each on example inputs recorded from one real batch;
the rest of the model is untouched; the checkpoint reloads; bad patterns and quantize
steps with ``modules:`` are one-line errors."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from robustness_harness.compress import METHODS
from robustness_harness.compress.base import CompressContext
from robustness_harness.compress.targeting import (
    FORWARD,
    apply_to_modules,
    select_modules,
    task_forward,
)
from robustness_harness.errors import HarnessError
from robustness_harness.run.session import HarnessOptions, HarnessSession


class Cascade(nn.Module):
    """Two small networks run one after the other, and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.stage1(x)).mean((2, 3)))


def _sparsity(module: nn.Module) -> float:
    weights = [m.weight for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    return float(sum((w == 0).sum() for w in weights) / sum(w.numel() for w in weights))


def _ctx(example: torch.Tensor, task: str = "classification") -> CompressContext:
    return CompressContext(
        example_inputs=example,
        progress=lambda _line: None,
        extras={FORWARD: task_forward(task)},
    )


def test_patterns_select_the_outermost_matches() -> None:
    model = Cascade()
    assert select_modules(model, ["stage*"]) == ["stage1", "stage2"]
    assert select_modules(model, ["stage1", "stage1.0"]) == ["stage1"]
    with pytest.raises(HarnessError) as err:
        select_modules(model, ["stage3"])
    assert str(err.value) == (
        "modules: no module of Cascade matches 'stage3' (fix: did you mean 'stage2'? use "
        "names from model.named_modules() (top level: stage1, stage2, head) or patterns "
        "such as stage1.*)"
    )


def test_only_the_named_parts_are_pruned() -> None:
    torch.manual_seed(0)
    model = Cascade()
    head_before = model.head.weight.clone()
    info = METHODS.get("global_magnitude")
    pruned = apply_to_modules(
        info, model, info.params(sparsity=0.5), _ctx(torch.rand(2, 3, 8, 8)), ["stage*"]
    )
    assert _sparsity(pruned.stage1) == pytest.approx(0.5, abs=0.05)
    assert _sparsity(pruned.stage2) == pytest.approx(0.5, abs=0.05)
    torch.testing.assert_close(pruned.head.weight, head_before)


def test_structured_pruning_of_a_part_sees_its_own_input() -> None:
    """l1_filter traces ``stage2`` on the 8-channel activations ``stage1`` gave it."""
    torch.manual_seed(0)

    class Inner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
            self.out = nn.Linear(16, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.body(x).mean((2, 3)))

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Inner())
    info = METHODS.get("l1_filter")
    example = torch.rand(2, 3, 8, 8)
    pruned = apply_to_modules(info, model, info.params(sparsity=0.5), _ctx(example), ["1"])
    assert pruned[1].body[0].out_channels == 8 and pruned[0].out_channels == 8
    assert pruned(example).shape == (2, 5)


@pytest.fixture
def mtcnn():
    pytest.importorskip("facenet_pytorch", reason="pip install --no-deps -r tests/real-weights.txt")
    from tests.real_models.factories import mtcnn_detector, mtcnn_shipped_state

    model = mtcnn_detector(40)
    model.load_state_dict(mtcnn_shipped_state())
    return model.eval()


def test_mtcnn_cascade_networks_pruned_as_parts(mtcnn) -> None:
    """MTCNN's P/R/O-Nets (real weights) on a real face photo: each net gets the inputs
    the cascade gave it (P-Net an image pyramid level, R-Net 24 px, O-Net 48 px crops)."""
    from skimage import data as photos

    image = torch.from_numpy(photos.astronaut()).permute(2, 0, 1).float()
    example = image[None]
    ctx = _ctx(example, "detection")
    seen: dict[str, tuple[int, ...]] = {}
    info = METHODS.get("global_magnitude")

    def recorded(model: nn.Module, params, c: CompressContext) -> nn.Module:
        seen[type(model).__name__] = tuple(c.example_inputs.shape)
        return info.fn(model, params, c)

    with torch.no_grad():
        before = mtcnn([image])[0]
    spy = dataclasses.replace(info, fn=recorded)
    apply_to_modules(spy, mtcnn, info.params(sparsity=0.3), ctx, ["pnet", "rnet", "onet"])
    assert seen["PNet"][1] == 3 and seen["RNet"][1:] == (3, 24, 24)
    assert seen["ONet"][1:] == (3, 48, 48)
    for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet):
        assert _sparsity(net) == pytest.approx(0.3, abs=0.02)
    with torch.no_grad():
        after = mtcnn([image])[0]
    assert len(after["boxes"]) >= 1 and len(before["boxes"]) >= 1


NETS = ["pnet", "rnet", "onet"]


def _photo() -> torch.Tensor:
    """A real photo with one face (skimage's astronaut), CHW float in [0, 255]."""
    from skimage import data as photos

    return torch.from_numpy(photos.astronaut()).permute(2, 0, 1).float()


def _compress_nets(mtcnn: nn.Module, method: str, **params: Any) -> nn.Module:
    """``method`` on MTCNN's three nets (``modules: [pnet, rnet, onet]``) on the photo."""
    info = METHODS.get(method)
    ctx = _ctx(_photo()[None], "detection")
    return apply_to_modules(info, mtcnn, info.params(**params), ctx, NETS)


def _reloaded_boxes(model: nn.Module, dense: nn.Module, where: Path) -> torch.Tensor:
    """The boxes on the photo of ``model`` saved to and reloaded from ``where``."""
    from robustness_harness.store.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(model, where, meta={})
    with torch.no_grad():
        return load_checkpoint(lambda: copy.deepcopy(dense), where)([_photo()])[0]["boxes"]


def test_mtcnn_cascade_networks_structurally_pruned_as_parts(mtcnn, tmp_path: Path) -> None:
    """l1_filter on nets with tuple outputs (class probabilities, boxes, landmarks): every
    output keeps its width, the nets shrink, the checkpoint reloads bit for bit."""
    dense = copy.deepcopy(mtcnn)
    pruned = _compress_nets(mtcnn, "l1_filter", sparsity=0.3)
    widths = {n: m.weight.shape[0] for n, m in pruned.named_modules() if hasattr(m, "weight")}
    assert (widths["pnet.conv4_1"], widths["pnet.conv4_2"]) == (2, 4)
    assert (widths["onet.dense6_1"], widths["onet.dense6_2"], widths["onet.dense6_3"]) == (2, 4, 10)
    assert widths["rnet.conv1"] < dense.rnet.conv1.out_channels
    total = sum(p.numel() for p in pruned.parameters())
    assert total < 0.6 * sum(p.numel() for p in dense.parameters())
    with torch.no_grad():
        expected = pruned([_photo()])[0]["boxes"]
    torch.testing.assert_close(_reloaded_boxes(pruned, dense, tmp_path), expected, rtol=0, atol=0)


def test_mtcnn_cascade_networks_quantized_as_parts(mtcnn, tmp_path: Path) -> None:
    """``modules: [pnet, rnet, onet]`` on ptq_int8 (real weights, real photo): three
    quantized graphs inside the float cascade, calibrated through its own forward; the
    face is still found, the checkpoint reloads bit for bit, the fake-quant twin agrees."""
    from torchvision.ops import box_iou

    from robustness_harness.compress.quantize import QuantizedPart, fake_quant_twin

    image = _photo()
    dense = copy.deepcopy(mtcnn)
    quantized = _compress_nets(mtcnn, "ptq_int8", calibration_images=1)
    parts = [n for n, m in quantized.named_modules() if isinstance(m, QuantizedPart)]
    assert parts == NETS
    with torch.no_grad():
        before, after = dense([image])[0], quantized([image])[0]
    assert len(before["boxes"]) == len(after["boxes"]) == 1
    assert box_iou(before["boxes"], after["boxes"]).item() > 0.9
    reloaded = _reloaded_boxes(quantized, dense, tmp_path)
    torch.testing.assert_close(reloaded, after["boxes"], rtol=0, atol=0)
    with torch.no_grad():
        twin = fake_quant_twin(dense, quantized)([image])[0]
    assert box_iou(twin["boxes"], after["boxes"]).item() > 0.98


SUITE = """
suite: parts
model: {{factory: 'partspkg:build', checkpoint: w.safetensors, task: classification}}
data: {{name: toysigns, split: val, params: {{n_train: 16, n_val: 8}}}}
baseline: dense
variants:
  dense: {{}}
  parts:
    compress: [{{prune: {{method: {method}, sparsity: 0.5, modules: {modules}}}}}]
checks:
  acc: {{metric: accuracy, min: 0}}
"""

PARTS = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.trunk = nn.Sequential(
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(16, num_classes),
        )

    def forward(self, x):
        return self.trunk(torch.relu(self.stem(x)))


def build(num_classes):
    return Net(num_classes)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "partspkg.py").write_text(PARTS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import partspkg  # type: ignore[import-not-found]

    torch.manual_seed(0)
    save_file(partspkg.build(12).state_dict(), str(tmp_path / "w.safetensors"))
    return tmp_path


def _write(
    project: Path, method: str, modules: str, kind: str = "prune", name: str = "suite.yaml"
) -> Path:
    text = SUITE.format(method=method, modules=modules)
    if kind == "quantize":
        text = text.replace(
            "{prune: {method: ptq_int8, sparsity: 0.5,", "{quantize: {method: ptq_int8,"
        )
    path = project / name
    path.write_text(text)
    return path


@pytest.mark.slow
def test_suite_with_modules_builds_reloads_and_keys_apart(project: Path) -> None:
    session = HarnessSession(HarnessOptions(cache_dir=str(project / "cache")), progress=print)
    suite = session.suite(_write(project, "l1_filter", "[trunk]"))
    model = session.model(suite, "parts")
    assert model.trunk[0].out_channels == 8 and model.stem.out_channels == 8
    fresh = HarnessSession(HarnessOptions(cache_dir=str(project / "cache")), progress=print)
    again = fresh.model(fresh.suite(project / "suite.yaml"), "parts")  # from the checkpoint
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(again(x), model(x))
    whole = session.suite(_write(project, "l1_filter", "[]", name="whole.yaml"))
    assert session.checkpoint_key(whole, "parts") != session.checkpoint_key(suite, "parts")


@pytest.mark.slow
def test_modules_on_a_quantize_step_quantizes_those_parts(project: Path) -> None:
    """``trunk`` becomes a quantized graph inside the float model; the checkpoint reloads
    to identical outputs and the fake-quant twin follows the quantized model."""
    from robustness_harness.compress.quantize import QuantizedPart, fake_quant_twin

    session = HarnessSession(HarnessOptions(cache_dir=str(project / "cache")), progress=print)
    suite = session.suite(_write(project, "ptq_int8", "[trunk]", kind="quantize"))
    model = session.model(suite, "parts")
    parts = [n for n, m in model.named_modules() if isinstance(m, QuantizedPart)]
    assert parts == ["trunk"]
    assert type(model.stem) is nn.Conv2d  # left in float
    x = torch.rand(2, 3, 32, 32)
    fresh = HarnessSession(HarnessOptions(cache_dir=str(project / "cache")), progress=print)
    again = fresh.model(fresh.suite(project / "suite.yaml"), "parts")
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    twin = fake_quant_twin(session.model(suite, "dense"), model)
    with torch.no_grad():
        assert (twin(x) - model(x)).abs().max() < 0.05 * model(x).abs().max()


def test_a_pattern_that_matches_nothing_is_one_line(project: Path) -> None:
    session = HarnessSession(HarnessOptions(cache_dir=str(project / "cache")), progress=print)
    suite = session.suite(_write(project, "global_magnitude", "[backbone]"))
    with pytest.raises(HarnessError) as err:
        session.model(suite, "parts")
    assert str(err.value).startswith(
        f"{project / 'suite.yaml'}: variants.parts.compress[0].modules: global_magnitude "
        "cannot compress Net: no module of Net matches 'backbone'"
    ), err.value


def test_the_plan_names_the_targeted_parts() -> None:
    from robustness_harness.run.plan import recipe
    from robustness_harness.suite import VariantSpec

    spec = VariantSpec.model_validate(
        {"compress": [{"quantize": {"method": "ptq_int8", "modules": ["pnet", "rnet"]}}]}
    )
    assert recipe(spec) == "quantize ptq_int8 modules=pnet,rnet"
