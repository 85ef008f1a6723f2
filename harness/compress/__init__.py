"""Compression methods; importing this package registers the built-in ones."""

# importing a method module registers its methods
from robustness_harness.compress import hydra, masks, prune, quantize, slimming  # noqa: F401
from robustness_harness.compress.prune import count_parameters, finalize_pruning, model_sparsity
from robustness_harness.compress.registry import (
    METHODS,
    CompressContext,
    MethodInfo,
    compression_method,
)

__all__ = [
    "METHODS",
    "CompressContext",
    "MethodInfo",
    "compression_method",
    "count_parameters",
    "finalize_pruning",
    "model_sparsity",
    "prune",
]
