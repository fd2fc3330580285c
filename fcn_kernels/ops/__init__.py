"""The public ops; each module validates arguments, picks a backend (fcn_kernels.backends) and
registers the C++ ops' fake kernels. _autograd.py holds each op family's one autograd, registered on
the C++ ops here and on the Triton ops in fcn_kernels/triton/, and the op naming rule."""
from .upsample_skip import upsample_skip
from .upsample_argmax import upsample_argmax
from .rarefied_conv2d import rarefied_conv2d
from .upsample_cross_entropy import upsample_cross_entropy

__all__ = ["upsample_skip", "upsample_argmax", "rarefied_conv2d", "upsample_cross_entropy"]
