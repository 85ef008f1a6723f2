"""The detector output contract (DESIGN §11) is checked, and ``model.labels`` is honoured.

A user factory wraps the embedded toydrive FCOS (with its shipped weights) and breaks
the contract in one way each: the first prediction batch must fail with one line
naming the suite file, the field ``model`` and the likely mistake.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.data.labels import LabelSpace
from robustness_harness.data.toydrive import generate_toydrive
from robustness_harness.errors import HarnessError, ModelOutputError
from robustness_harness.inference.output_contract import check_detector_outputs
from robustness_harness.run.session import HarnessOptions, HarnessSession
from robustness_harness_models.toydrive import WEIGHTS_FILE

GAPPED_IDS = [1, 3, 4, 8, 10, 15]
"""Category ids the toydrive categories 1..6 are renumbered to (COCO-like gaps)."""

USER_MODULE = '''
"""A user's detector: the toydrive FCOS, its output post-processed by ``mistake``."""
import torch
from torch import nn

from robustness_harness_models.toydrive import build_toydrive_fcos


def _xywh(out):
    boxes = out["boxes"].clone()
    boxes[:, 2:] -= boxes[:, :2]
    return {**out, "boxes": boxes}


def _normalised(out):
    return {**out, "boxes": out["boxes"] / 128.0}


def _zero_based(out):
    return {**out, "labels": out["labels"] - 1}


def _logits(out):
    return {**out, "scores": torch.logit(out["scores"]) * 3}


def _float_labels(out):
    return {**out, "labels": out["labels"].float()}


def _no_scores(out):
    return {"boxes": out["boxes"], "labels": out["labels"]}


def _blind(out):
    return {k: v[:0] for k, v in out.items()}


MISTAKES = {
    "none": None, "xywh": _xywh, "normalised": _normalised, "zero_based": _zero_based,
    "logits": _logits, "float_labels": _float_labels, "no_scores": _no_scores,
    "blind": _blind,
}


class UserDetector(nn.Module):
    """``mistake`` applied to each output; ``category_ids`` (1-based position = the
    inner label) turns index labels into category ids, and targets back."""

    def __init__(self, mistake="none", category_ids=None):
        super().__init__()
        self.inner = build_toydrive_fcos(num_classes=7)
        self.mistake = MISTAKES[mistake]
        self.ids = None if category_ids is None else torch.tensor([0, *category_ids])

    def forward(self, images, targets=None):
        if self.training:
            if self.ids is not None:
                index = {int(c): i for i, c in enumerate(self.ids.tolist())}
                as_index = lambda labels: torch.tensor(
                    [index[int(c)] for c in labels], dtype=torch.int64
                )
                targets = [{**t, "labels": as_index(t["labels"])} for t in targets]
            return self.inner(images, targets)
        outs = self.inner(images)
        if self.ids is not None:
            outs = [{**o, "labels": self.ids[o["labels"]]} for o in outs]
        if self.mistake == "dict":
            return outs[0]
        return [self.mistake(o) for o in outs] if self.mistake else outs


def build(mistake="none", category_ids=None):
    return UserDetector(mistake, category_ids)


def build_dict():
    model = UserDetector()
    model.mistake = "dict"
    return model
'''


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Toydrive data as user COCO files, plus a copy with gapped category ids."""
    out = generate_toydrive(tmp_path_factory.mktemp("coco"), n_train=4, n_val=6)
    for split in ("train", "val"):
        doc = json.loads(out[split].read_text())
        for item in (*doc["categories"], *doc["annotations"]):
            key = "id" if "name" in item else "category_id"
            item[key] = GAPPED_IDS[item[key] - 1]
        out[f"{split}_gapped"] = out[split].with_name(f"{split}_gapped.json")
        out[f"{split}_gapped"].write_text(json.dumps(doc))
    return out


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user package on ``sys.path`` and the shipped weights under the wrapper's keys."""
    package = tmp_path / "userdet"
    package.mkdir()
    (package / "__init__.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    weights = {f"inner.{k}": v for k, v in load_file(WEIGHTS_FILE).items()}
    torch.save(weights, tmp_path / "weights.pt")
    return tmp_path


def _suite(
    where: Path,
    coco: dict[str, Path],
    model: str,
    *,
    gapped: bool = False,
    name: str = "suite.yaml",
    checks: str = "clean_map_drop: {metric: map, drop_max: 1.0}",
) -> Path:
    tail = "_gapped" if gapped else ""
    text = f"""
suite: user
model: {model}
data:
  coco: {{images: {coco["images"]}, annotations: {coco["val" + tail]}}}
  train: {{images: {coco["images"]}, annotations: {coco["train" + tail]}}}
seed: 0
baseline: dense
variants:
  dense: {{}}
  same: {{}}
  tuned:
    finetune: {{epochs: 1, max_steps: 1, batch_size: 2}}
checks:
  {checks}
"""
    path = where / name
    path.write_text(text)
    return path


def _session(where: Path) -> HarnessSession:
    options = HarnessOptions(cache_dir=str(where / "cache"), device="cpu")
    return HarnessSession(options, progress=lambda _: None)


def _model(factory: str = "userdet:build", **kwargs: object) -> str:
    shown = ", ".join(f"{k}: {json.dumps(v)}" for k, v in kwargs.items())
    return f'{{factory: "{factory}", checkpoint: weights.pt, kwargs: {{{shown}}}}}'


def _contract_error(user: Path, coco: dict[str, Path], model: str) -> str:
    session = _session(user)
    suite = session.suite(_suite(user, coco, model))
    with pytest.raises(ModelOutputError) as err:
        session.predictions(suite, "dense")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{suite.path}: model: the detector "), text
    return text


# -- the contract, through a suite -----------------------------------------------------------
@pytest.mark.parametrize(
    ("mistake", "expected"),
    [
        ("xywh", "boxes look like [x, y, w, h] (fix: return [x1, y1, x2, y2] in input pixels)"),
        ("zero_based", "labels start at 0: torchvision detectors reserve 0 for background"),
        ("normalised", "boxes look normalised"),
        ("logits", "not in [0, 1] (fix: return probabilities"),
        ("float_labels", "returned 'labels' of dtype torch.float32"),
        ("no_scores", "returned a dict with keys ['boxes', 'labels'] per image, without scores"),
    ],
)
def test_broken_contract_is_one_line_error(
    user: Path, coco: dict[str, Path], mistake: str, expected: str
) -> None:
    text = _contract_error(user, coco, _model(mistake=mistake))
    assert expected in text, text


def test_zero_based_labels_hint(user: Path, coco: dict[str, Path]) -> None:
    text = _contract_error(user, coco, _model(mistake="zero_based"))
    assert "(fix: add 1 to the labels, or set model.labels)" in text


def test_output_that_is_not_a_list_of_dicts(user: Path, coco: dict[str, Path]) -> None:
    text = _contract_error(user, coco, _model("userdet:build_dict"))
    wanted = "returned a dict with keys ['boxes', 'labels', 'scores'], not a list of dicts"
    assert wanted in text, text


def test_correct_detector_predicts(user: Path, coco: dict[str, Path]) -> None:
    session = _session(user)
    suite = session.suite(_suite(user, coco, _model()))
    outcome = session.run_check(suite, "same", "clean_map_drop")
    assert outcome.passed and outcome.value == outcome.baseline_value > 0.3


def test_drop_gate_against_a_zero_baseline_is_an_error(user: Path, coco: dict[str, Path]) -> None:
    """A detector that finds nothing scores mAP 0: a drop gate against it cannot fail,
    so it is an error naming the suite, the check and the baseline."""
    checks = "clean_map_drop: {metric: map, drop_max: 0.02}\n  floor: {metric: map, min: 0.1}"
    session = _session(user)
    suite = session.suite(_suite(user, coco, _model(mistake="blind"), checks=checks))
    with pytest.raises(HarnessError) as err:
        session.run_check(suite, "same", "clean_map_drop")
    assert str(err.value).startswith(
        f"{suite.path}: checks.clean_map_drop: baseline 'dense' has map 0.000: "
        "gates against it prove nothing (fix: check the baseline model's output contract"
    )
    floor = session.run_check(suite, "same", "floor")  # absolute thresholds still judge
    assert not floor.passed and floor.value == 0.0


# -- the contract, on outputs ----------------------------------------------------------------
INDEX = LabelSpace.of("index", [1, 2, 3])


def _out(boxes: list[list[float]], labels: list[int], scores: list[float] | None = None) -> dict:
    n = len(labels)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores if scores is not None else [0.9] * n),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({"boxes": torch.zeros(0, 4)}, "returned a dict with keys ['boxes'], not a list"),
        ([_out([[0, 0, 5, 5]], [1])] * 2, "returned 2 outputs for a batch of 1 images"),
        ([_out([[0, 0, 5, 5]], [7])], "labels up to 7, but model.labels: index means 1..3"),
        ([_out([[0, 0, 5, 5]], [-1])], "negative labels"),
        ([_out([[0, 0, 500, 5]], [1])], "far outside the 64x64 input image"),
        ([_out([[0, 0, float("nan"), 5]], [1])], "1 of 1 boxes with NaN or inf"),
        ([{**_out([[0, 0, 5, 5]], [1]), "scores": torch.ones(2)}], "'scores' of shape (2,)"),
        ([{**_out([[0, 0, 5, 5]], [1]), "boxes": [[0, 0, 5, 5]]}], "'boxes' as a list"),
    ],
)
def test_contract_mistakes(outputs: object, expected: str) -> None:
    with pytest.raises(ModelOutputError) as err:
        check_detector_outputs(outputs, [(64, 64)], INDEX)
    assert expected in str(err.value) and str(err.value).startswith("model: the detector")


def test_category_id_labels_that_look_like_ids() -> None:
    space = LabelSpace.of("index", [1, 5, 9])
    with pytest.raises(ModelOutputError) as err:
        check_detector_outputs([_out([[0, 0, 5, 5]] * 2, [5, 9])], [(64, 64)], space)
    assert "look like COCO category ids (fix: set model.labels: category_id)" in str(err.value)
    ids = LabelSpace.of("category_id", [1, 5, 9])
    with pytest.raises(ModelOutputError, match="none of them a category id of the data"):
        check_detector_outputs([_out([[0, 0, 5, 5]] * 2, [2, 3])], [(64, 64)], ids)
    # ids the data lack beside ones it has are fine (a COCO detector on a subset)
    assert check_detector_outputs([_out([[0, 0, 5, 5]] * 2, [5, 44])], [(64, 64)], ids) == 2


def test_background_label_of_a_sigmoid_head_is_not_a_mistake() -> None:
    """torchvision FCOS/RetinaNet can emit label 0; with label K present (or only 0) the
    labels are not shifted, and those detections are dropped as before."""
    boxes = [[0, 0, 5, 5]] * 3
    assert check_detector_outputs([_out(boxes, [0, 1, 3])], [(64, 64)], INDEX) == 3
    assert check_detector_outputs([_out(boxes, [0, 0, 0])], [(64, 64)], INDEX) == 3
    single = LabelSpace.of("index", [4])
    with pytest.raises(ModelOutputError, match="labels start at 0"):
        check_detector_outputs([_out(boxes, [0, 0, 0])], [(64, 64)], single)


def test_empty_outputs_pass() -> None:
    assert check_detector_outputs([_out([], [])], [(64, 64)], INDEX) == 0


# -- model.labels ----------------------------------------------------------------------------
def test_label_spaces() -> None:
    index = LabelSpace.of("index", [8, 3, 1])
    ids = LabelSpace.of("category_id", [8, 3, 1])
    assert (index.num_classes, ids.num_classes) == (4, 9)
    assert (index.label_of(8), ids.label_of(8)) == (3, 8)
    labels = np.array([0, 1, 2, 3, 8])
    assert index.categories(labels).tolist() == [-1, 1, 3, 8, -1]
    assert ids.categories(labels).tolist() == [-1, 1, -1, 3, 8]
    assert index.impossible(labels).tolist() == [False, False, False, False, True]


def test_targets_follow_the_label_space(coco: dict[str, Path]) -> None:
    data = CocoDetectionData.load(coco["images"], coco["train_gapped"])
    as_ids = data.with_labels("category_id").select({"timeofday": ["day", "night"]})
    assert as_ids.label_space.kind == "category_id"
    for image_id in data.image_ids:
        wanted = [a["category_id"] for a in data.annotations(image_id)]
        assert as_ids.target(image_id)["labels"].tolist() == wanted
        index = [GAPPED_IDS.index(c) + 1 for c in wanted]
        assert data.target(image_id)["labels"].tolist() == index
    assert as_ids.fingerprint == data.fingerprint


@pytest.mark.slow
def test_category_id_labels_score_as_index_labels(user: Path, coco: dict[str, Path]) -> None:
    """The same boxes, emitted as index labels or as category ids, score bit-exactly
    the same mAP; fine-tuning hands the category-id model category-id targets."""
    as_index = _suite(user, coco, _model(), gapped=True, name="index.yaml")
    ids_model = _model(category_ids=GAPPED_IDS)[:-1] + ", labels: category_id}"
    as_ids = _suite(user, coco, ids_model, gapped=True, name="ids.yaml")
    session = _session(user)
    a, b = session.suite(as_index), session.suite(as_ids)
    pa, pb = session.predictions(a, "dense"), session.predictions(b, "dense")
    assert pa.fingerprint == pb.fingerprint
    assert {int(c) for d in pb.by_image.values() for c in d.category_ids} <= set(GAPPED_IDS)
    map_a = session.run_check(a, "same", "clean_map_drop").value
    map_b = session.run_check(b, "same", "clean_map_drop").value
    assert map_a == map_b and map_a > 0.3
    assert session.checkpoint_key(a, "dense") != session.checkpoint_key(b, "dense")
    # the wrapper maps category-id targets back to its inner labels: index targets
    # (1..6) would miss its table (KeyError 2) and fail the build
    assert session.run_check(b, "tuned", "clean_map_drop").value > 0


def test_labels_key_is_part_of_the_cache_key_only_when_set(user: Path, coco) -> None:
    session = _session(user)
    plain = session.suite(_suite(user, coco, _model(), name="a.yaml"))
    explicit = session.suite(_suite(user, coco, _model()[:-1] + ", labels: index}", name="b.yaml"))
    ids = session.suite(_suite(user, coco, _model()[:-1] + ", labels: category_id}", name="c.yaml"))
    keys = [session.checkpoint_key(s, "dense") for s in (plain, explicit, ids)]
    assert keys[0] == keys[1] != keys[2]


def test_labels_is_for_detectors(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "suite: s\nmodel: {name: toysigns-cnn, labels: category_id}\n"
        "data: {name: toysigns}\nbaseline: dense\nvariants: {dense: {}}\n"
        "checks: {a: {metric: accuracy, min: 0.1}}\n"
    )
    with pytest.raises(HarnessError, match=r"model\.labels: labels: category_id is for detectors"):
        _session(tmp_path).suite(path)
