"""fcn-kernels: fused kernels for Fully Convolutional Networks (Long, Shelhamer, Darrell, CVPR 2015).

Public names and semantics: docs/DESIGN.md. Ops run on the backend chosen by
`backend=` / FCN_KERNELS_BACKEND / automatically (see fcn_kernels.backends).
The other public submodules (fcn_kernels.metrics, .data, .losses, ...) load on first use. The
application (training, the CLI, doctor, benchmarks) is fcn_kernels.app: imported by name, never an
attribute of this package.
"""

import importlib

# _ext registers the C++ ops (imported for that alone); models: fcn_kernels.models.FCN8s after `import fcn_kernels`
from . import _ext, models, reference  # noqa: F401  (_ext)
from ._version import __version__
from .backends import available_backends
from .convolutionalize import convolutionalize
from .export import export_onnx, onnx_translations
from .modules import FusedUpsampleSkip, RarefiedConv2d, bilinear_kernel
from .ops import (
    interpolate_argmax,
    interpolate_cross_entropy,
    rarefied_conv2d,
    upsample_argmax,
    upsample_cross_entropy,
    upsample_skip,
)
from .reference import rarefy_filter
from .shift_stitch import rarefy, shift_and_stitch

# The library's public submodules, reachable as attributes; those not imported above load on first access.
# Not fcn_kernels.app (the application): it imports the library, never the reverse (tests/test_layers.py).
_SUBMODULES = frozenset(
    {
        "backends",
        "convolutionalize",
        "data",
        "errors",
        "export",
        "losses",
        "metrics",
        "models",
        "modules",
        "ops",
        "reference",
        "shift_stitch",
        "triton",
    }
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES)


__all__ = [
    "__version__",
    "available_backends",
    "upsample_skip",
    "upsample_argmax",
    "upsample_cross_entropy",
    "interpolate_cross_entropy",
    "interpolate_argmax",
    "FusedUpsampleSkip",
    "bilinear_kernel",
    "rarefy_filter",
    "reference",
    "models",
    "convolutionalize",
    "rarefied_conv2d",
    "RarefiedConv2d",
    "shift_and_stitch",
    "rarefy",
    "export_onnx",
    "onnx_translations",
]
