"""The reference FCN models on VGG16, powered by the fused ops (docs/DESIGN.md §3)."""

from .coord import CoordMap, crop_offset, layer_map
from .fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from .inference import InferenceModel, optimize_for_inference
from .loading import load_torchfcn, load_vgg16

__all__ = [
    "FCN32s",
    "FCN16s",
    "FCN8s",
    "FCN8sAtOnce",
    "load_vgg16",
    "load_torchfcn",
    "optimize_for_inference",
    "InferenceModel",
    "CoordMap",
    "crop_offset",
    "layer_map",
]
