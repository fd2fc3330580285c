"""The public ops; each module validates arguments, picks a backend (fcn_kernels.backends) and
registers the C++ ops' fake kernels and autograd. Each op family's one autograd, and the op naming rule,
live in fcn_kernels/_autograd/, which both backends import (the C++ ops here, the Triton ops in
fcn_kernels/triton/): ops/ imports triton/, never the other way."""

from .interpolate_cross_entropy import interpolate_argmax, interpolate_cross_entropy
from .rarefied_conv2d import rarefied_conv2d
from .upsample_argmax import upsample_argmax
from .upsample_cross_entropy import upsample_cross_entropy
from .upsample_skip import upsample_skip

__all__ = [
    "upsample_skip",
    "upsample_argmax",
    "rarefied_conv2d",
    "upsample_cross_entropy",
    "interpolate_cross_entropy",
    "interpolate_argmax",
]
