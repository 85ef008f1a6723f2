"""Compression methods; importing this package registers the built-in ones (look method
names up through it; ``robustness_harness.registry`` holds ``METHODS`` and the
``register_compression`` decorator)."""

# importing a method module registers its methods
from robustness_harness.compress import hydra, masks, prune, quantize, slimming  # noqa: F401
from robustness_harness.compress.base import CompressContext, MethodInfo
from robustness_harness.compress.prune import count_parameters, finalize_pruning, model_sparsity
from robustness_harness.registry import METHODS, compression_method, register_compression

__all__ = [
    "METHODS",
    "CompressContext",
    "MethodInfo",
    "compression_method",
    "count_parameters",
    "finalize_pruning",
    "model_sparsity",
    "prune",
    "register_compression",
]
