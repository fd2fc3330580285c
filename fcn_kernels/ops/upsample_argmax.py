"""fcn_kernels.upsample_argmax: FCN's last stage as labels, without the full-resolution scores (docs/DESIGN.md §2)."""
import torch

from .. import _ext, backends, reference
from .._args import autocast_inputs
from .upsample_skip import validate


def upsample_argmax(x, weight, bias=None, skip=None, *, stride, groups=1, out_offset=(0, 0), out_size=None,
                    skip_offset=(0, 0), backend=None):
    """upsample_skip(...).argmax(dim=1): int64 labels (N, Ho, Wo), never writing the (N, Cout, Ho, Wo) scores.

    Arguments, validation, autocast and backends are upsample_skip's. Not differentiable (the labels are
    integers; inputs that require grad are fine).

    Guarantee: every backend computes each score as that backend's upsample_skip does (accumulation in
    float32, float64 for float64 inputs; bias, then skip added; one rounding to x's dtype) and takes the
    first maximum of those rounded scores in torch.argmax's order (NaN counts as the largest; the lowest
    class wins ties). On the CPU backend the scores are bitwise upsample_skip's, so the labels equal
    upsample_skip(..., backend="cpu").argmax(1) exactly, ties included. Against the exact scores (the float64
    reference) a label can differ only where the exact scores of the chosen and the true class are within
    upsample_skip's error bound of each other (tests/tolerances.py), e.g. at exact ties of the rounded values.
    """
    x, weight, bias, skip = autocast_inputs(x, weight, bias, skip)
    stride, groups, out_offset, out_size, skip_offset = validate(
        x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset)
    which = backends.resolve(backend, x.device, "upsample_argmax")
    if which == "reference":
        return reference.upsample_argmax(x, weight, bias, skip, stride=stride, groups=groups,
                                         out_offset=out_offset, out_size=out_size, skip_offset=skip_offset)
    if which == "triton":
        from ..triton import upsample_argmax as triton_impl
        return triton_impl.upsample_argmax(x, weight, bias, skip, stride, groups, out_offset, out_size,
                                           skip_offset)
    return torch.ops.fcn_kernels.upsample_argmax(x, weight, bias, skip, stride, groups, out_offset, out_size,
                                                 skip_offset)


if _ext.HAS_EXTENSION:
    @torch.library.register_fake("fcn_kernels::upsample_argmax")
    def _fake(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
        validate(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset)
        return x.new_empty((x.shape[0], out_size[0], out_size[1]), dtype=torch.int64)
