"""Shared test fixtures: one generated toydrive copy for the whole test session."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_test_process() -> None:
    """Keep torch from oversubscribing the 2-core CI machine."""
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_data_root() -> Path:
    """Generated datasets shared by tests and by `pytest suites/` (the repo's cache)."""
    root = Path(os.environ.get("HARNESS_CACHE", REPO / ".harness-cache")) / "data"
    root.mkdir(parents=True, exist_ok=True)
    return root


# -- every test that trains or builds a model carries the `slow` marker -------------------
#
# For the whole session, the training loops and the variant build are replaced by
# wrappers that record each call, wherever callers look them up: on the defining module
# (or class) and in every module that did `from ... import train_detector`. A test not
# marked `slow` that ran one of them, in its setup or its call (in-process pytester runs
# included: they do build), fails with one line naming the entry point. Work done in
# another process (`runpytest_subprocess`, xdist workers) is not seen from here, and a
# checkpoint reused from a warm cache is not a build.

SLOW_ENTRY_POINTS: tuple[tuple[str, str, str, str], ...] = (
    # (module, attribute path, verb, result attribute that must be truthy or "")
    # the training loop of detectors: default recipes, `finetune:`, adversarial fine-tuning
    ("robustness_harness.train.finetune", "train_detector", "trains", "steps"),
    # the training loop of classifiers, adversarial fine-tuning included
    ("robustness_harness.train.classify", "train_classifier", "trains", "steps"),
    # compress + fine-tune + save of a variant checkpoint (its `BuildRecord("ckpt", ...)`)
    ("robustness_harness.run.session", "HarnessSession._build_variant", "builds a variant", ""),
)

_slow_calls: list[list[str]] = []
"""One list per running test (nested for in-process pytester runs) of entry points hit."""


def _recording(name: str, fn: Any, verb: str, attr: str) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        if not attr or getattr(result, attr, 1):  # a 0-step training run did not train
            for calls in _slow_calls:
                calls.append(f"{verb} ({name})")
        return result

    wrapper.__slow_marker_check__ = True  # type: ignore[attr-defined]
    return wrapper


def _install_slow_wrappers() -> list[tuple[Any, str, Any]]:
    """Wrap every entry point where callers look it up; returns the undo list."""
    undo: list[tuple[Any, str, Any]] = []
    for module_name, path, verb, attr in SLOW_ENTRY_POINTS:
        owner: Any = importlib.import_module(module_name)
        *parents, key = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        original = owner.__dict__[key]
        if getattr(original, "__slow_marker_check__", False):
            continue  # already wrapped by an outer session
        wrapper = _recording(f"{module_name}.{path}", original, verb, attr)
        targets = [(owner, key)]
        if not parents:  # a function: also the modules that imported it by name
            for module in list(sys.modules.values()):
                namespace = getattr(module, "__dict__", None)
                if not isinstance(namespace, dict):
                    continue
                targets += [
                    (module, k)
                    for k, v in list(namespace.items())
                    if v is original and module is not owner
                ]
        for obj, name in targets:
            undo.append((obj, name, obj.__dict__[name]))
            setattr(obj, name, wrapper)
    return undo


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    undo = _install_slow_wrappers()
    try:
        return (yield)
    finally:
        for obj, name, value in reversed(undo):
            setattr(obj, name, value)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Any:
    _slow_calls.append([])
    try:
        return (yield)
    finally:
        _slow_calls.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    result = yield
    calls = _slow_calls[-1] if _slow_calls else []
    if calls and item.get_closest_marker("slow") is None:
        pytest.fail(
            f"this test {calls[0]} but is not marked slow: add @pytest.mark.slow",
            pytrace=False,
        )
    return result
