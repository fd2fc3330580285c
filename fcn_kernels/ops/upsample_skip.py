"""fcn_kernels.upsample_skip: transposed conv + crop + skip add (docs/DESIGN.md §2)."""

import torch

from .. import _ext, backends, reference
from .._args import autocast_inputs, check_extent, check_int, check_planes, check_tensor, pair
from .._autograd import register_upsample_skip
from ._fakes import register_backward_fakes


def _full_size(n, s, k):
    return (n - 1) * s + k


# validate's normalised geometry, in its order: the C++ and Triton ops take it by position, the reference by name
GEOMETRY = ("stride", "groups", "out_offset", "out_size", "skip_offset")


def validate(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
    """Checks every argument; returns (stride, groups, out_offset, out_size, skip_offset) normalised."""
    check_tensor(x, "x", 4)
    check_tensor(weight, "weight", 4, x)
    groups = check_int(groups, "groups", minimum=1)
    stride = pair(stride, "stride", minimum=1)
    out_offset = pair(out_offset, "out_offset", minimum=0)
    skip_offset = pair(skip_offset, "skip_offset", minimum=0)
    n, cin, h, w = x.shape
    if h < 1 or w < 1:
        raise ValueError(f"x must have non-empty spatial size, got shape {tuple(x.shape)}")
    if weight.shape[0] != cin:
        raise ValueError(
            f"weight.shape[0] ({weight.shape[0]}) must equal x's channels ({cin}); "
            f"weight is (Cin, Cout // groups, Kh, Kw) = {tuple(weight.shape)}"
        )
    if cin % groups:
        raise ValueError(f"x's channels ({cin}) must be divisible by groups ({groups})")
    if min(weight.shape[1:]) < 1:
        raise ValueError(f"weight must be non-empty, got shape {tuple(weight.shape)}")
    cout = weight.shape[1] * groups
    full = (_full_size(h, stride[0], weight.shape[2]), _full_size(w, stride[1], weight.shape[3]))
    check_planes(cin // groups, h, w, lambda: f"x of shape {tuple(x.shape)}")
    for value, name in ((stride, "stride"), (out_offset, "out_offset"), (skip_offset, "skip_offset")):
        check_extent(max(value), lambda: f"{name} {value}")
    check_extent(
        max(stride) * (max(full) + 64),
        lambda: (
            f"stride {stride} times the full transposed-conv output {full} "
            f"(x {tuple(x.shape)}, weight {tuple(weight.shape)})"
        ),
    )
    if out_size is None:
        out_size = (full[0] - out_offset[0], full[1] - out_offset[1])
    out_size = pair(out_size, "out_size", minimum=0)
    check_extent(max(out_size), lambda: f"out_size {out_size}")
    for ax in (0, 1):
        if out_offset[ax] + out_size[ax] > full[ax]:
            raise ValueError(
                f"crop window out_offset={out_offset}, out_size={out_size} exceeds the full "
                f"transposed-conv output {full} (x {tuple(x.shape)}, weight "
                f"{tuple(weight.shape)}, stride {stride})"
            )
    check_planes(
        max(cin, cout) // groups,
        *out_size,
        lambda: f"out_size {out_size} (with {max(cin, cout) // groups} channels per group)",
    )
    check_extent(
        n * cout * out_size[0] * out_size[1],
        lambda: f"the output ({n}, {cout}, {out_size[0]}, {out_size[1]}) of out_size {out_size}",
    )
    if bias is not None:
        check_tensor(bias, "bias", 1, x)
        if bias.shape[0] != cout:
            raise ValueError(f"bias must have shape ({cout},), got {tuple(bias.shape)}")
    if skip is not None:
        check_tensor(skip, "skip", 4, x)
        if skip.shape[:2] != (n, cout):
            raise ValueError(f"skip must have shape ({n}, {cout}, Hs, Ws), got {tuple(skip.shape)}")
        check_planes(1, *skip.shape[2:], lambda: f"skip of shape {tuple(skip.shape)}")
        for ax in (0, 1):
            if skip_offset[ax] + out_size[ax] > skip.shape[2 + ax]:
                raise ValueError(
                    f"skip window skip_offset={skip_offset}, size {out_size} exceeds skip's "
                    f"spatial size {tuple(skip.shape[2:])}"
                )
    return stride, groups, out_offset, out_size, skip_offset


def upsample_skip(
    x,
    weight,
    bias=None,
    skip=None,
    *,
    stride,
    groups=1,
    out_offset=(0, 0),
    out_size=None,
    skip_offset=(0, 0),
    backend=None,
):
    r"""Transposed convolution, crop and skip addition in one pass.

    Computes ``conv_transpose2d(x, weight, bias, stride=stride, groups=groups)``, cropped to the window of
    size ``out_size`` at ``out_offset``, plus the window of ``skip`` of the same size at ``skip_offset``;
    each output element is written once and the uncropped output is never built. The result equals
    :func:`fcn_kernels.reference.upsample_skip`; see docs/DESIGN.md §2.1 for the full contract.

    Args:
        x (Tensor[N, Cin, H, W]): the coarse input (e.g. class scores).
        weight (Tensor[Cin, Cout // groups, Kh, Kw]): the filters, in ``nn.ConvTranspose2d``'s layout.
        bias (Tensor[Cout], optional): added to every output position. Default: None.
        skip (Tensor[N, Cout, Hs, Ws], optional): the map whose window is added. Default: None.
        stride (int or Tuple[int, int]): the upsampling factor (rows, cols).
        groups (int): the transposed convolution's groups; ``groups=Cin`` is depthwise. Default: 1.
        out_offset (int or Tuple[int, int]): top-left corner (oy, ox) of the crop in the uncropped output,
            whose size is ``((H - 1) * sh + Kh, (W - 1) * sw + Kw)``. Default: (0, 0).
        out_size (int or Tuple[int, int], optional): the output size (Ho, Wo); None: everything from
            ``out_offset`` to the end. The window must fit inside the uncropped output. Default: None.
        skip_offset (int or Tuple[int, int]): top-left corner (sy, sx) of the window of ``skip`` that is
            added; it must fit inside ``skip``. Default: (0, 0).
        backend (str, optional): ``"cpu"``, ``"cuda"``, ``"triton"`` or ``"reference"``; None: the
            automatic choice of :mod:`fcn_kernels.backends` (docs/DESIGN.md §4.1). Default: None.

    Differentiable in ``x``, ``weight``, ``bias`` and ``skip``; a weight that does not require grad costs no
    weight-gradient work. Under ``torch.autocast`` all four tensors are cast to the autocast dtype.

    Returns:
        Tensor[N, Cout, Ho, Wo]: in ``x``'s dtype and device.

    Raises:
        ValueError, TypeError: an argument of the wrong shape, dtype or device, or a window that does not fit.

    Example::

        >>> import torch
        >>> import torch.nn.functional as F
        >>> from fcn_kernels import bilinear_kernel, upsample_skip
        >>> x = torch.arange(18.).reshape(1, 2, 3, 3)         # 2 channels of 3 x 3 scores
        >>> weight = bilinear_kernel(2, 4, groups=2)          # (2, 1, 4, 4): bilinear upsampling by 2
        >>> skip = torch.ones(1, 2, 8, 8)
        >>> y = upsample_skip(x, weight, None, skip, stride=2, groups=2, out_offset=1, out_size=6,
        ...                   skip_offset=2)
        >>> y.shape
        torch.Size([1, 2, 6, 6])
        >>> full = F.conv_transpose2d(x, weight, stride=2, groups=2)   # (1, 2, 8, 8), never built above
        >>> torch.equal(y, full[:, :, 1:7, 1:7] + skip[:, :, 2:8, 2:8])
        True
    """
    x, weight, bias, skip = autocast_inputs(x, weight, bias, skip)
    geometry = validate(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset)
    which = resolve(
        backend, "upsample_skip", x, weight, geometry, weight_grad=weight.requires_grad and torch.is_grad_enabled()
    )
    return dispatch("upsample_skip", which, (x, weight, bias, skip), geometry)


def resolve(backend, op, x, weight, geometry, **facts):
    """backends.resolve for an op of upsample_skip's geometry (validate's), given the facts its choice weighs."""
    stride, groups, _, out_size, _ = geometry
    facts.update(cin_g=x.shape[1] // groups, cout_g=weight.shape[1], kernel=tuple(weight.shape[2:]), stride=stride)
    return backends.resolve(backend, x.device, op, out_size=out_size, **facts)


def dispatch(op, which, tensors, geometry):
    """Runs `op` (upsample_skip or upsample_argmax) on backend `which`: the reference takes the geometry by name,
    the Triton and C++ ops by position."""
    if which == "reference":
        return getattr(reference, op)(*tensors, **dict(zip(GEOMETRY, geometry)))
    if which == "triton":
        from ..triton import upsample_argmax as triton_argmax, upsample_skip as triton_skip

        module = {"upsample_skip": triton_skip, "upsample_argmax": triton_argmax}[op]
        return getattr(module, op)(*tensors, *geometry)
    return getattr(torch.ops.fcn_kernels, op)(*tensors, *geometry)


def register_fake(op, output):
    """Registers `op`'s fake: validate's checks, then output(x, weight, groups, out_size), an empty result."""

    @torch.library.register_fake(f"fcn_kernels::{op}")
    def _fake(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
        validate(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset)
        return output(x, weight, groups, out_size)


if _ext.HAS_EXTENSION:
    register_fake(
        "upsample_skip", lambda x, weight, groups, size: x.new_empty((x.shape[0], weight.shape[1] * groups, *size))
    )

    register_upsample_skip(*register_backward_fakes("upsample_skip"))
