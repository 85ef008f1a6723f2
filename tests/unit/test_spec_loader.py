"""YAML reading: safe loading, duplicate keys, line numbers, files, canonical JSON."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from robustness_harness.errors import SpecError
from robustness_harness.suite import Suite, canonical_json, load_suite, parse_suite
from robustness_harness.suite.loader import DuplicateKeyError, UniqueKeyLoader
from tests.unit.builders import suite_head


def test_load_suite_from_file(good_suite_text: str, tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(good_suite_text, encoding="utf-8")
    suite = load_suite(path)
    assert isinstance(suite, Suite)
    assert suite.path == path
    assert suite.spec == parse_suite(good_suite_text, path).spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        suite.path = tmp_path  # type: ignore[misc]


def test_exception_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="suite file not found"):
        load_suite(tmp_path / "nope.yaml")


def test_exception_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("suite: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        load_suite(path)


def test_error_names_file_and_line(good_suite_text: str) -> None:
    text = good_suite_text.replace("drop_max: 0.03", "drop_max: lots")
    with pytest.raises(SpecError) as info:
        parse_suite(text, "gates/det.yaml")
    err = info.value
    line = 1 + text.splitlines().index(
        "  night_map: {metric: map, split: {timeofday: night}, drop_max: lots}"
    )
    assert err.file == f"gates/det.yaml:{line}"
    assert err.field == "checks.night_map.drop_max"


def test_unsafe_tags_are_rejected() -> None:
    with pytest.raises(SpecError, match=r"invalid YAML: .*line 1, column 8.*remove the tag"):
        parse_suite("suite: !!python/object/apply:os.system [echo hi]\n", "x.yaml")


def test_multiple_documents_rejected() -> None:
    with pytest.raises(SpecError, match=r"invalid YAML: .*single document"):
        parse_suite("suite: a\n---\nsuite: b\n", "x.yaml")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_exception_empty(text: str) -> None:
    with pytest.raises(SpecError, match=r"x\.yaml: the suite file is empty"):
        parse_suite(text, "x.yaml")


@pytest.mark.parametrize(("text", "got"), [("just text\n", "the string"), ("3\n", "int 3")])
def test_exception_top_level_scalar(text: str, got: str) -> None:
    with pytest.raises(SpecError, match=f"top level must be a mapping.*got {got}"):
        parse_suite(text, "x.yaml")


def test_unique_key_loader_rejects_duplicates() -> None:
    with pytest.raises(DuplicateKeyError, match="duplicate key 'a'"):
        yaml.load("a: 1\nb: {c: 1}\na: 2\n", Loader=UniqueKeyLoader)
    assert yaml.load("a: 1\nb: {a: 2}\n", Loader=UniqueKeyLoader) == {
        "a": 1,
        "b": {"a": 2},
    }


def test_merge_keys_are_not_duplicates() -> None:
    text = "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n"
    assert yaml.load(text, Loader=UniqueKeyLoader)["other"] == {"x": 3, "y": 2}


def test_nested_duplicate_names_the_field(good_suite_text: str) -> None:
    text = good_suite_text.replace("finetune: {epochs: 2}", "finetune: {epochs: 2, epochs: 3}")
    with pytest.raises(SpecError) as info:
        parse_suite(text, "x.yaml")
    assert info.value.field == "variants.unstructured-80.finetune.epochs"
    assert "duplicate key 'epochs'" in str(info.value)


def test_anchors_and_aliases_work(spec_registries: SimpleNamespace) -> None:
    text = suite_head(
        "  a: &step {compress: [{prune: {method: _test_prune, sparsity: 0.5}}]}\n  b: *step\n"
    )
    text += "  c: {metric: map, drop_max: 0.1}\n"
    spec = parse_suite(text, "x.yaml").spec
    assert spec.variants["a"] == spec.variants["b"]


# ----------------------------------------------------------------------------- canonical JSON
def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": Path("x/y")}]}) == (
        '{"a":[1,{"c":"x/y","d":2}],"b":1}'
    )


def test_canonical_json_of_specs(good_suite_text: str) -> None:
    a = parse_suite(good_suite_text, "x.yaml").spec
    b = parse_suite(good_suite_text, "x.yaml").spec
    assert canonical_json(a) == canonical_json(b)
    step = a.variants["unstructured-80"].compress[0]
    assert canonical_json(step) == (
        '{"kind":"prune","method":"_test_prune",'
        '"params":{"schedule":"agp","sparsity":0.8,"steps":8}}'
    )
    changed = parse_suite(good_suite_text.replace("sparsity: 0.8", "sparsity: 0.7"), "x.yaml")
    assert canonical_json(changed.spec) != canonical_json(a)


def test_canonical_json_rejects_unknown_objects() -> None:
    with pytest.raises(TypeError, match="canonical_json cannot encode object"):
        canonical_json({"x": object()})
