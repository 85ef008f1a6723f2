"""An unsupported (architecture × method) pair through ``pytest suites/``: every gate of
the variant is an error with the same one line (variant, method, architecture), in
results.json too, and nothing fine-tunes first. Below the plugin:
tests/unit/test_unsupported_early.py."""

from __future__ import annotations

import json

import pytest
import torch

from robustness_harness.data.toysigns import TOYSIGNS_CLASSES

FACTORY = '''
import torch
from torch import nn


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it (no int8 PTQ)."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        if x.sum() > 0:
            x = x * 1.0
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def branchy(num_classes):
    return Branchy(num_classes)
'''

SUITE = """
suite: early
model: {factory: "branchyfactory:branchy", task: classification, checkpoint: ../w.pt}
data: {name: toysigns, split: val, params: {n_train: 24, n_val: 12}}
baseline: dense
variants:
  dense: {}
  pq:
    compress: [{prune: {method: l1_filter, sparsity: 0.3}}, {quantize: {method: ptq_int8}}]
    finetune: {epochs: 1, batch_size: 8}
checks:
  accuracy: {metric: accuracy, drop_max: 1}
  ece: {metric: ece, increase_max: 1}
"""


def test_every_gate_of_the_variant_has_the_one_line(suite_dir: pytest.Pytester) -> None:
    suite_dir.makepyfile(branchyfactory=FACTORY)
    suite_dir.syspathinsert()
    import branchyfactory  # type: ignore[import-not-found]

    torch.manual_seed(0)
    torch.save(branchyfactory.branchy(len(TOYSIGNS_CLASSES)).state_dict(), suite_dir.path / "w.pt")
    (suite_dir.path / "suites" / "early.yaml").write_text(SUITE)
    result = suite_dir.runpytest("suites", "-p", "no:cacheprovider", "--harness-report", "out")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "Traceback" not in out and "fine-tun" not in out, out
    expected = (
        "early.yaml: variants.pq.compress[1].quantize.method: ptq_int8 cannot compress Branchy"
    )
    doc = json.loads((suite_dir.path / "out" / "results.json").read_text())
    records = [r for r in doc["items"] if r["variant"] == "pq"]
    assert {r["check"] for r in records} == {"accuracy", "ece"}
    messages = {r["message"] for r in records}
    assert len(messages) == 1 and expected in messages.pop(), records
    assert all(r["status"] == "error" for r in records)
