"""Triton kernels (docs/DESIGN.md §4): one module per op family, each holding its kernels, launchers and the
`torch.library.triton_op` registration with autograd (fcn_kernels/_autograd/); bias_grad.py the bias
gradient of both (kernel and triton_op), utils.py the helpers they share (autotuning, the launch on the
tensors' device, dot arithmetic), _tiles.py their program -> work decompositions. An op module imports
those three, never another op module, and nothing here imports fcn_kernels.ops (tests/test_layers.py).

Import needs `triton`. For CPU tensors, set TRITON_INTERPRET=1 before triton is first imported: the
kernels then run in Triton's interpreter (slow; how they are tested without a GPU), patched where it
rounds otherwise than the GPU (_interpreter.py: tl.fma, float32 -> bfloat16).
`python -m fcn_kernels.triton.aot` compiles every kernel and autotune config for sm_80 and sm_90 (no GPU
needed) and prints registers, spills and shared memory. FCN_KERNELS_TRITON_AUTOTUNE=0 pins every kernel
to its first autotune config (utils.autotune).
"""

from ._interpreter import patch_interpreter

patch_interpreter()

from . import upsample_skip  # noqa: E402  (registers fcn_kernels::upsample_skip_triton*)

__all__ = ["upsample_skip"]
from . import rarefied_conv2d  # noqa: E402  (registers fcn_kernels::rarefied_conv2d_triton*)

__all__ += ["rarefied_conv2d"]
from . import upsample_argmax  # noqa: E402  (registers fcn_kernels::upsample_argmax_triton)

__all__ += ["upsample_argmax"]
from . import interpolate_argmax, interpolate_cross_entropy  # noqa: E402  (fcn_kernels::interpolate_*_triton)

__all__ += ["interpolate_cross_entropy", "interpolate_argmax"]
from . import upsample_cross_entropy  # noqa: E402  (registers fcn_kernels::upsample_logsumexp*_triton)

__all__ += ["upsample_cross_entropy"]
