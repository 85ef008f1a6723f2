"""Compression methods; importing this package registers the built-in ones."""

# importing a method module registers its methods
from harness.compress import hydra, masks, prune, quantize, slimming  # noqa: F401
from harness.compress.prune import count_parameters, finalize_pruning, model_sparsity
from harness.compress.registry import METHODS, CompressContext, MethodInfo, compression_method

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
