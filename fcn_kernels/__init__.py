"""fcn-kernels: fused kernels for Fully Convolutional Networks (Long, Shelhamer, Darrell, CVPR 2015).

Public names and semantics: DESIGN.md. Ops run on the backend chosen by
`backend=` / FCN_KERNELS_BACKEND / automatically (see fcn_kernels.backends).
"""
from . import _ext, reference  # noqa: F401  (_ext registers the C++ ops)
from .backends import available_backends
from .modules import FusedUpsampleSkip, bilinear_kernel
from .ops import upsample_skip
from .reference import rarefy_filter
from .ops import rarefied_conv2d
from .modules import RarefiedConv2d
from .shift_stitch import rarefy, shift_and_stitch
from .convolutionalize import convolutionalize
from .export import export_onnx, onnx_translations
from . import models  # noqa: E402  (fcn_kernels.models.FCN8s after `import fcn_kernels`)

__version__ = "0.1.0"

__all__ = [
    "available_backends",
    "upsample_skip",
    "FusedUpsampleSkip",
    "bilinear_kernel",
    "rarefy_filter",
    "reference",
    "convolutionalize",
    "rarefied_conv2d",
    "RarefiedConv2d",
    "shift_and_stitch",
    "rarefy",
    "export_onnx",
    "onnx_translations",
]
