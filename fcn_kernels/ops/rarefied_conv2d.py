"""fcn_kernels.rarefied_conv2d: convolution with the paper's rarefied filter (docs/DESIGN.md §2)."""

import torch

from .. import _ext, backends, reference
from .._args import autocast_inputs, check_extent, check_int, check_planes, check_tensor, pair
from .._autograd import register_rarefied_conv2d
from ._fakes import register_backward_fakes


def validate(x, weight, bias, rarefaction, padding, groups):
    """Checks every argument; returns (rarefaction, padding, groups) normalised to pairs / int."""
    check_tensor(x, "x", 4)
    check_tensor(weight, "weight", 4, x)
    groups = check_int(groups, "groups", minimum=1)
    rarefaction = pair(rarefaction, "rarefaction", minimum=1)
    padding = pair(padding, "padding", minimum=0)
    n, cin, h, w = x.shape
    if cin < 1 or h < 1 or w < 1:
        raise ValueError(f"x must have non-empty channel and spatial sizes, got shape {tuple(x.shape)}")
    cout, cin_g, kh, kw = weight.shape
    if min(weight.shape) < 1:
        raise ValueError(f"weight must be non-empty, got shape {tuple(weight.shape)}")
    if cin % groups:
        raise ValueError(f"x's channels ({cin}) must be divisible by groups ({groups})")
    if cin_g * groups != cin:
        raise ValueError(
            f"weight.shape[1] ({cin_g}) * groups ({groups}) must equal x's channels ({cin}); "
            f"weight is (Cout, Cin // groups, Kh, Kw) = {tuple(weight.shape)}"
        )
    if cout % groups:
        raise ValueError(f"weight.shape[0] (out channels, {cout}) must be divisible by groups ({groups})")
    eff = ((kh - 1) * rarefaction[0] + 1, (kw - 1) * rarefaction[1] + 1)
    padded = (h + 2 * padding[0], w + 2 * padding[1])
    check_extent(max(rarefaction), lambda: f"rarefaction {rarefaction}")
    check_extent(max(padding), lambda: f"padding {padding}")
    check_extent((kh + kw) * sum(rarefaction), lambda: f"rarefaction {rarefaction} times the kernel size {(kh, kw)}")
    check_extent(max(padded), lambda: f"padding {padding} with x of shape {tuple(x.shape)} (padded size {padded})")
    if eff[0] > padded[0] or eff[1] > padded[1]:
        raise ValueError(
            f"rarefied kernel {eff} (kernel {(kh, kw)}, rarefaction {rarefaction}) is larger than "
            f"the padded input {padded} (x {tuple(x.shape)}, padding {padding})"
        )
    out = (padded[0] - eff[0] + 1, padded[1] - eff[1] + 1)
    per_group = max(cin, cout) // groups
    check_planes(per_group, h, w, lambda: f"x of shape {tuple(x.shape)}")
    check_planes(per_group, *out, lambda: f"the output {out} of padding {padding}")
    check_extent(
        n * cout * out[0] * out[1], lambda: f"the output ({n}, {cout}, {out[0]}, {out[1]}) of padding {padding}"
    )
    # The CPU kernels' zero-padded copies of x and grad_out (csrc/index/rarefied_conv2d.h, the wide layout).
    check_extent(
        max(cin, cout) * (n * padded[0] * padded[1] + eff[1] - 1),
        lambda: f"padding {padding} with x of shape {tuple(x.shape)} (the padded copies of x)",
    )
    if bias is not None:
        check_tensor(bias, "bias", 1, x)
        if bias.shape[0] != cout:
            raise ValueError(f"bias must have shape ({cout},), got {tuple(bias.shape)}")
    return rarefaction, padding, groups


def output_size(x_shape, weight_shape, rarefaction, padding):
    """(N, Cout, Ho, Wo) of a validated call."""
    return (
        x_shape[0],
        weight_shape[0],
        x_shape[2] + 2 * padding[0] - (weight_shape[2] - 1) * rarefaction[0],
        x_shape[3] + 2 * padding[1] - (weight_shape[3] - 1) * rarefaction[1],
    )


def rarefied_conv2d(x, weight, bias=None, *, rarefaction=1, padding=0, groups=1, backend=None):
    r"""Convolution with the paper's rarefied filter, without building it.

    Computes ``F.conv2d(x, weight, bias, stride=1, padding=padding, dilation=rarefaction, groups=groups)``:
    the filter's taps are read ``rarefaction`` pixels apart (the paper's f'[i, j] = f[i / s, j / s], see
    :func:`fcn_kernels.rarefy_filter`). See docs/DESIGN.md §2.3.

    Args:
        x (Tensor[N, Cin, H, W]): the input.
        weight (Tensor[Cout, Cin // groups, Kh, Kw]): the filters, in ``nn.Conv2d``'s layout.
        bias (Tensor[Cout], optional): added to every output position. Default: None.
        rarefaction (int or Tuple[int, int]): the distance (rows, cols) between the filter's taps. Default: 1.
        padding (int or Tuple[int, int]): zeros added on both sides of each spatial axis. Default: 0.
        groups (int): as in ``nn.Conv2d``; ``groups=Cin`` is depthwise. Default: 1.
        backend (str, optional): ``"cpu"``, ``"cuda"``, ``"triton"`` or ``"reference"``; None: the
            automatic choice of :mod:`fcn_kernels.backends` (docs/DESIGN.md §4.1). Default: None.

    Differentiable in ``x``, ``weight`` and ``bias``; a weight that does not require grad costs no
    weight-gradient work.

    Returns:
        Tensor[N, Cout, Ho, Wo]: in ``x``'s dtype, with ``Ho = H + 2 * ph - (Kh - 1) * rh`` (``Wo`` alike).
        Our kernels write it contiguous (NCHW); the stock path follows ``F.conv2d``'s memory format.

    Raises:
        ValueError, TypeError: an argument of the wrong shape, dtype or device, or a rarefied filter larger
        than the padded input.

    Example::

        >>> import torch
        >>> import torch.nn.functional as F
        >>> from fcn_kernels import rarefied_conv2d, rarefy_filter
        >>> x = torch.arange(2 * 8 * 8.).reshape(1, 2, 8, 8)
        >>> weight = torch.ones(2, 1, 3, 3)                   # depthwise 3 x 3
        >>> y = rarefied_conv2d(x, weight, rarefaction=2, padding=2, groups=2)
        >>> y.shape
        torch.Size([1, 2, 8, 8])
        >>> torch.equal(y, F.conv2d(x, rarefy_filter(weight, 2), padding=2, groups=2))   # the 5 x 5 filter
        True
    """
    x, weight, bias = autocast_inputs(x, weight, bias)  # as F.conv2d under torch.autocast
    rarefaction, padding, groups = validate(x, weight, bias, rarefaction, padding, groups)
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    which = backends.resolve(
        backend,
        x.device,
        "rarefied_conv2d",
        cin_g=weight.shape[1],
        cout_g=weight.shape[0] // groups,
        stride=rarefaction,
        channels=weight.shape[0],
        out_size=output_size(x.shape, weight.shape, rarefaction, padding)[2:],
        grad=grad,
    )
    if which == "reference":
        return reference.rarefied_conv2d(x, weight, bias, rarefaction=rarefaction, padding=padding, groups=groups)
    if which == "triton":
        from ..triton import rarefied_conv2d as triton_impl

        return triton_impl.rarefied_conv2d(x, weight, bias, rarefaction, padding, groups)
    return torch.ops.fcn_kernels.rarefied_conv2d(x, weight, bias, rarefaction, padding, groups)


if _ext.HAS_EXTENSION:

    @torch.library.register_fake("fcn_kernels::rarefied_conv2d")
    def _fake(x, weight, bias, rarefaction, padding, groups):
        rarefaction, padding, groups = validate(x, weight, bias, rarefaction, padding, groups)
        return x.new_empty(output_size(x.shape, weight.shape, rarefaction, padding))

    register_rarefied_conv2d(*register_backward_fakes("rarefied_conv2d"))
