"""Valid suites parse into typed specs; numbers, params, paths and gating rules."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robustness_harness.errors import HarnessError, SpecError
from robustness_harness.suite import (
    CheckSpec,
    CompressStep,
    FinetuneSpec,
    SuiteSpec,
    VariantSpec,
    parse_suite,
)
from robustness_harness.suite.problems import SpecProblem
from robustness_harness.suite.schema import NOT_YET_KEYS, parse_number
from tests.unit.builders import MINIMAL_SUITE


def _parse(text: str, path: Path | str = "suite.yaml") -> SuiteSpec:
    return parse_suite(text, path).spec


def _with_checks(*lines: str, apply: str = "") -> str:
    text = MINIMAL_SUITE + "".join(f"  {line}\n" for line in lines)
    return text + (f"apply: {apply}\n" if apply else "")


def test_smoke_good_suite(good_suite_text: str, spec_registries: SimpleNamespace) -> None:
    suite = parse_suite(good_suite_text, "suites/toydrive.yaml")
    spec = suite.spec
    assert suite.name == "toydrive-detector"
    assert suite.raw["baseline"] == "dense"
    assert list(spec.variants) == ["dense", "unstructured-80", "int8"]
    assert spec.variants["dense"] == VariantSpec()
    (prune,) = spec.variants["unstructured-80"].compress
    assert (prune.kind, prune.method) == ("prune", "_test_prune")
    assert prune.params == spec_registries.prune_params(sparsity=0.8, schedule="agp", steps=8)
    assert spec.variants["unstructured-80"].finetune == FinetuneSpec(epochs=2)
    (quant,) = spec.variants["int8"].compress
    assert quant.kind == "quantize" and isinstance(quant.params, spec_registries.quant_params)
    assert spec.checks["strict_map"].params == {"iou": 0.75}
    assert spec.checks["night_map"].split == {"timeofday": "night"}
    assert spec.checks["worst_class_ap"].reduce == "worst_drop"
    assert spec.apply == {"latency": ["int8"]}
    assert spec.data.split == "val" and spec.data.params == {}


def test_items_order_and_apply(good_suite_text: str) -> None:
    spec = _parse(good_suite_text)
    all_but_latency = ["clean_map_drop", "worst_class_ap", "night_map", "strict_map"]
    assert spec.items() == [
        ("dense", "strict_map"),
        *[("unstructured-80", c) for c in all_but_latency],
        *[("int8", c) for c in [*all_but_latency, "latency"]],
    ]


@pytest.mark.parametrize(
    ("check", "apply", "gated"),
    [
        ("{metric: map, min: 0.5}", "", True),
        ("{metric: map, max: 0.9}", "", True),
        ("{metric: map, min: 0.5, drop_max: 0.1}", "", True),
        ("{metric: per_class_ap, reduce: worst, min: 0.1}", "", True),
        ("{metric: per_class_ap, reduce: worst_drop, max: 0.08}", "", False),
        ("{metric: map, drop_max: 0.02}", "", False),
        ("{metric: map, ratio_min: 0.9}", "", False),
        ("{metric: map, min: 0.5}", "{c: [small]}", False),
        ("{metric: map, min: 0.5}", "{c: [dense, small]}", True),
        ("{metric: map, drop_max: 0.02}", "{c: [dense, small]}", False),
    ],
)
def test_baseline_gating_rule(
    spec_registries: SimpleNamespace, check: str, apply: str, gated: bool
) -> None:
    spec = _parse(_with_checks(f"c: {check}", apply=apply))
    assert (("dense", "c") in spec.items()) is gated
    assert ("small", "c") in spec.items()


def test_apply_restricts_variants(spec_registries: SimpleNamespace) -> None:
    text = MINIMAL_SUITE.replace("  small:", "  other: {}\n  small:")
    text += "  a: {metric: map, drop_max: 0.1}\n  b: {metric: map, drop_max: 0.1}\n"
    spec = _parse(text + "apply: {b: [small]}\n")
    assert spec.items() == [("other", "a"), ("small", "a"), ("small", "b")]


# ----------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2/255", 2 / 255),
        ("0.5/255", 0.5 / 255),
        (" 1 / 4 ", 0.25),
        ("-1/2", -0.5),
        ("1e-3", 1e-3),
        ("3", 3.0),
        (7, 7.0),
        (0.25, 0.25),
        ("inf", float("inf")),
    ],
)
def test_parse_number_accepts(text: object, expected: float) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize("bad", [True, False, None, "abc", "2/x", "1/0", "nan", "1/2/3", [1], {}])
def test_exception_parse_number_rejects(bad: object) -> None:
    with pytest.raises(SpecProblem) as info:
        parse_number(bad)
    assert info.value.hint == "write a number such as 0.02 or a fraction such as 2/255"


@given(st.integers(-1000, 1000), st.integers(1, 1000))
def test_fraction_equals_division(num: int, den: int) -> None:
    assert parse_number(f"{num}/{den}") == num / den


def test_fractions_in_thresholds_and_params(spec_registries: SimpleNamespace) -> None:
    spec = _parse(_with_checks("c: {metric: map, drop_max: 2/255, iou: 1/2, max_dets: 10}"))
    check = spec.checks["c"]
    assert check.drop_max == 2 / 255
    assert check.params == {"iou": 0.5, "max_dets": 10}


def test_fraction_in_method_float_param(spec_registries: SimpleNamespace) -> None:
    spec = _parse(
        MINIMAL_SUITE.replace("sparsity: 0.5", "sparsity: 1/4") + "  c: {metric: map, min: 0}\n"
    )
    assert spec.variants["small"].compress[0].params.sparsity == 0.25


@pytest.mark.parametrize(
    ("entry", "expect"),
    [
        ("max_dets: 10.5", "expected a whole number"),
        ("max_dets: true", "expected a whole number"),
        ("iou: false", "boolean false"),
    ],
)
def test_exception_metric_param_types(
    spec_registries: SimpleNamespace, entry: str, expect: str
) -> None:
    with pytest.raises(SpecError, match=expect):
        _parse(_with_checks(f"c: {{metric: map, drop_max: 0.1, {entry}}}"))


def test_required_metric_param(spec_registries: SimpleNamespace) -> None:
    with pytest.raises(SpecError, match="needs the parameter 'k'"):
        _parse(_with_checks("c: {metric: _test_needs_k, min: 0}"))
    spec = _parse(_with_checks("c: {metric: _test_needs_k, min: 0, k: 3}"))
    assert spec.checks["c"].params == {"k": 3}


# ----------------------------------------------------------------------------- pieces
def test_model_factory_and_checkpoint(spec_registries: SimpleNamespace, tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.pt").write_bytes(b"x")
    text = _with_checks("c: {metric: map, min: 0}").replace(
        "{name: toydrive-fcos}",
        "{factory: 'mypkg.models:build', checkpoint: w/model.pt, kwargs: {num_classes: 3}}",
    )
    model = _parse(text, tmp_path / "suite.yaml").model
    assert model.factory == "mypkg.models:build" and model.name is None
    assert model.checkpoint == str(tmp_path / "w" / "model.pt")
    assert model.kwargs == {"num_classes": 3}


def test_coco_data_paths(spec_registries: SimpleNamespace, tmp_path: Path) -> None:
    for name in ("val", "train"):
        (tmp_path / name).mkdir()
        (tmp_path / f"{name}.json").write_text("{}")
    coco = (
        "{coco: {images: val, annotations: val.json}, "
        "train: {images: train, annotations: train.json}}"
    )
    text = _with_checks("c: {metric: map, min: 0}").replace("{name: toydrive}", coco)
    data = _parse(text, tmp_path / "s.yaml").data
    assert data.name is None and data.coco is not None and data.train is not None
    assert data.coco.images == str(tmp_path / "val")
    assert data.train.annotations == str(tmp_path / "train.json")
    with pytest.raises(SpecError, match=r"data\.split: 'split' applies to registered datasets"):
        _parse(text.replace("{coco:", "{split: val, coco:"), tmp_path / "s.yaml")


def test_exception_train_with_registry_dataset(
    spec_registries: SimpleNamespace, tmp_path: Path
) -> None:
    text = _with_checks("c: {metric: map, min: 0}").replace(
        "{name: toydrive}", "{name: toydrive, train: {images: a, annotations: b}}"
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").write_text("{}")
    with pytest.raises(SpecError, match=r"data\.train: 'train' applies to coco data"):
        _parse(text, tmp_path / "s.yaml")


def test_data_params_and_split(spec_registries: SimpleNamespace) -> None:
    text = _with_checks("c: {metric: map, min: 0}").replace(
        "{name: toydrive}", "{name: toydrive, split: test, params: {n_images: 40}}"
    )
    data = _parse(text).data
    assert (data.split, data.params) == ("test", {"n_images": 40})


def test_variant_may_be_empty_value(spec_registries: SimpleNamespace) -> None:
    spec = _parse(_with_checks("c: {metric: map, min: 0}").replace("dense: {}", "dense:"))
    assert spec.variants["dense"] == VariantSpec()


def test_finetune_fields(spec_registries: SimpleNamespace) -> None:
    text = _with_checks("c: {metric: map, min: 0}").replace(
        "sparsity: 0.5}}]}",
        "sparsity: 0.5}}], finetune: {epochs: 0, lr: 1/1000, batch_size: 4, seed: 3, "
        "sampler: uniform, augment: none, max_steps: 10}, seed: 5}",
    )
    variant = _parse(text).variants["small"]
    assert variant.seed == 5
    assert variant.finetune == FinetuneSpec(epochs=0, lr=0.001, batch_size=4, seed=3, max_steps=10)


@pytest.mark.parametrize("key", sorted(NOT_YET_KEYS["check"]))
def test_exception_every_unsupported_check_key(spec_registries: SimpleNamespace, key: str) -> None:
    with pytest.raises(SpecError, match=rf"checks\.c\.{key}: .*not supported.*remove the key"):
        _parse(_with_checks(f"c: {{metric: map, drop_max: 0.1, {key}: 1}}"))


def test_split_values(spec_registries: SimpleNamespace) -> None:
    spec = _parse(_with_checks("c: {metric: map, drop_max: 0.1, split: {night: true, n: 2}}"))
    assert spec.checks["c"].split == {"night": True, "n": 2}
    with pytest.raises(SpecError, match=r"checks\.c\.split\.a: a split value must be"):
        _parse(_with_checks("c: {metric: map, drop_max: 0.1, split: {a: [1]}}"))
    with pytest.raises(SpecError, match=r"checks\.c\.split: the split filter is empty"):
        _parse(_with_checks("c: {metric: map, drop_max: 0.1, split: {}}"))


def test_compress_step_built_in_python(spec_registries: SimpleNamespace) -> None:
    params = spec_registries.prune_params(sparsity=0.5)
    step = CompressStep(kind="prune", method="_test_prune", params=params)
    assert step.params.model_dump()["sparsity"] == 0.5
    assert step.model_dump(mode="json")["params"]["sparsity"] == 0.5


def test_check_built_in_python(spec_registries: SimpleNamespace) -> None:
    check = CheckSpec(metric="map", drop_max="2/255", params={"iou": 0.75})
    assert check.params == {"iou": 0.75}
    assert check.drop_max == 2 / 255
    assert not check.has_absolute_threshold


def test_several_problems_are_counted(spec_registries: SimpleNamespace) -> None:
    text = _with_checks("a: {metric: map, drop_max: x}", "b: {metric: map, min: y}")
    with pytest.raises(HarnessError) as info:
        _parse(text)
    first = str(info.value)
    assert "checks.a.drop_max" in first and "(and 1 more problem)" in first
    assert "\n" not in first
    problems = info.value.problems  # type: ignore[attr-defined]
    assert [p.field for p in problems] == ["checks.a.drop_max", "checks.b.min"]


def test_exception_numeric_variant_name(spec_registries: SimpleNamespace) -> None:
    text = _with_checks("c: {metric: map, min: 0}").replace("  small:", "  50:")
    with pytest.raises(SpecError, match=r"variants: variant name 50 is not text .*quote it"):
        _parse(text)
