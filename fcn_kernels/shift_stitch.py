"""Dense output from a strided net, two ways (the paper's section 3.2).

* `shift_and_stitch(fn, x, f)`: run the net on the f^2 shifted inputs, interlace the outputs.
* `rarefy(net)`: the same net with every stride set to 1 and every later filter (and pool) rarefied by
  the product of the strides before it; one pass gives the dense output.

On every position that neither computation takes from padding (see the tests), the two agree.
"""

import copy
from collections import OrderedDict

import torch
from torch import nn

from ._args import pair
from .modules.rarefied import RarefiedAvgPool2d, RarefiedConv2d, RarefiedMaxPool2d


def _ceil_div(a, b):
    return -(-a // b)


def shift_and_stitch(fn, x, factor):
    r"""Dense output of a strided net by the paper's shift-and-stitch (section 3.2).

    Runs ``fn`` once for every shift (dy, dx), ``0 <= dy < fy``, ``0 <= dx < fx``, and interlaces the outputs:
    ``out[..., y * fy + dy, x * fx + dx] = fn(x[..., dy:, dx:])[..., y, x]``. Shifting *crops* the first dy rows
    and dx columns of the input (nothing is zero-filled), so the dense position ``Y = y * fy + dy`` reads the
    same input pixels as output ``Y`` of :func:`rarefy` ``(net)``. See docs/DESIGN.md §2.4.

    Args:
        fn (Callable[[Tensor], Tensor]): a net of total stride ``factor``; maps (..., H, W) to (..., h, w).
        x (Tensor[..., H, W]): the input, at least 2-D, with ``H >= fy`` and ``W >= fx``.
        factor (int or Tuple[int, int]): the net's total stride (fy, fx).

    Differentiable in ``x``. Costs ``fy * fx`` passes of ``fn``.

    Returns:
        Tensor[..., Hd, Wd]: in the dtype of ``fn``'s output. ``Hd`` is the minimum over dy of
        ``dy + fy * h_dy`` (h_dy: the height of the passes with row shift dy), ``Wd`` alike: the largest
        top-left block that the passes fill completely.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> from fcn_kernels import rarefy, shift_and_stitch
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 2, 3)).eval()
        >>> x = torch.randn(1, 1, 10, 10)
        >>> dense = shift_and_stitch(net, x, 2)               # 4 passes of net
        >>> dense.shape
        torch.Size([1, 2, 4, 4])
        >>> torch.equal(dense[..., ::2, ::2], net(x))          # shift (0, 0) is the coarse output
        True
        >>> torch.allclose(dense, rarefy(net)(x), atol=1e-5)   # one pass of the rarefied net
        True
    """
    fy, fx = pair(factor, "factor", minimum=1)
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise TypeError(
            f"x must be a tensor with at least 2 (spatial) dimensions, got "
            f"{type(x).__name__ if not isinstance(x, torch.Tensor) else tuple(x.shape)}"
        )
    if x.shape[-2] < fy or x.shape[-1] < fx:
        raise ValueError(f"x's spatial size {tuple(x.shape[-2:])} is smaller than the factor {(fy, fx)}")
    outs = {}
    for dy in range(fy):
        for dx in range(fx):
            outs[dy, dx] = fn(x[..., dy:, dx:])
    first = outs[0, 0]
    for (dy, dx), o in outs.items():
        if not isinstance(o, torch.Tensor) or o.dim() < 2 or o.shape[:-2] != first.shape[:-2]:
            raise ValueError(
                f"fn's outputs must be tensors of the same leading shape; shift {(dy, dx)} gave "
                f"{tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__}, "
                f"shift (0, 0) gave {tuple(first.shape)}"
            )
    hd = min(dy + fy * o.shape[-2] for (dy, dx), o in outs.items())
    wd = min(dx + fx * o.shape[-1] for (dy, dx), o in outs.items())
    if hd <= 0 or wd <= 0:
        raise ValueError(f"fn gave an empty output for input {tuple(x.shape)}")
    out = first.new_empty(*first.shape[:-2], hd, wd)
    for (dy, dx), o in outs.items():
        if dy < hd and dx < wd:  # rows dy, dy + fy, ... below hd: ceil((hd - dy) / fy) of them
            out[..., dy::fy, dx::fx] = o[..., : _ceil_div(hd - dy, fy), : _ceil_div(wd - dx, fx)]
    return out


# Layers that act on each spatial position independently: copied unchanged.
_POINTWISE = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Threshold,
    nn.LogSigmoid,
    nn.LocalResponseNorm,
)
# Pointwise only in eval mode (batch statistics or random masks differ between the shifted passes).
_POINTWISE_EVAL = (nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _unsupported(path, m, why=""):
    return TypeError(
        f"rarefy: unsupported layer {path} ({type(m).__name__}){why}; supported: nn.Sequential "
        f"(nested), nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, and pointwise layers (activations; "
        f"BatchNorm2d and dropout in eval mode)"
    )


def _scale(p, r):
    return (p[0] * r[0], p[1] * r[1])


def _rarefy_layer(m, r, path):
    """(rarefied copy of m, cumulative stride after m) for a layer seeing a map of cumulative stride r."""
    if isinstance(m, nn.Sequential):
        if type(m).forward is not nn.Sequential.forward:
            raise _unsupported(path, m, " (a Sequential subclass with its own forward)")
        layers = OrderedDict()
        for name, child in m.named_children():
            layers[name], r = _rarefy_layer(child, r, f"{path}.{name}")
        out = nn.Sequential(layers)
        out.train(m.training)
        return out, r
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise _unsupported(path, m, f" (padding_mode={m.padding_mode!r}; only 'zeros')")
        return RarefiedConv2d.from_conv(m, r, drop_stride=True), _scale(pair(m.stride, "stride"), r)
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            raise _unsupported(path, m, " (return_indices=True)")
        kernel = pair(m.kernel_size, "kernel_size")
        stride = pair(m.stride if m.stride is not None else m.kernel_size, "stride")
        dilation = pair(m.dilation, "dilation")
        # ceil_mode only adds partial windows at the coarse map's bottom/right border; at stride 1 it is moot.
        return (
            RarefiedMaxPool2d(kernel, _scale(dilation, r), _scale(pair(m.padding, "padding"), r)),
            _scale(stride, r),
        )
    if isinstance(m, nn.AvgPool2d):
        kernel = pair(m.kernel_size, "kernel_size")
        stride = pair(m.stride if m.stride is not None else m.kernel_size, "stride")
        return (
            RarefiedAvgPool2d(
                kernel, r, _scale(pair(m.padding, "padding"), r), m.count_include_pad, m.divisor_override
            ),
            _scale(stride, r),
        )
    if isinstance(m, _POINTWISE_EVAL):
        if m.training:
            raise _unsupported(path, m, " in train mode (call net.eval() first)")
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is None:
            raise _unsupported(path, m, " without running statistics")
        return copy.deepcopy(m), r
    if isinstance(m, _POINTWISE):
        return copy.deepcopy(m), r
    raise _unsupported(path, m)


def rarefy(net: nn.Sequential) -> nn.Sequential:
    r"""A copy of a sequential net whose one stride-1 pass gives shift-and-stitch's dense output.

    Every stride becomes 1, and every conv and pool after a stride is rarefied by the product s of the
    strides before it (the paper's f'[i, j] = f[i / s, j / s]): dilation and padding times s. Convs become
    :class:`RarefiedConv2d` (same ``weight`` and ``bias``, so state_dicts load unchanged), max pools
    ``RarefiedMaxPool2d``, average pools ``RarefiedAvgPool2d`` (same count_include_pad and divisor_override).
    ``rarefy(net)(x)`` equals ``shift_and_stitch(net, x, f)`` (f the net's total stride) on every position
    where neither takes a value from padding. See docs/DESIGN.md §2.4.

    Args:
        net (nn.Sequential): nested nn.Sequential, nn.Conv2d (padding_mode 'zeros'), nn.MaxPool2d (no
            return_indices), nn.AvgPool2d and pointwise layers (activations; BatchNorm2d and dropout in eval
            mode). ``net`` itself is not changed.

    Returns:
        nn.Sequential: the rarefied copy, with ``net``'s layer names and training mode.

    Raises:
        TypeError: ``net`` is not an nn.Sequential, or holds a layer outside the list above (named).

    Example::

        >>> import torch
        >>> from torch import nn
        >>> from fcn_kernels import rarefy
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
        >>> dense = rarefy(net)
        >>> dense[2]
        RarefiedConv2d(4, 2, kernel_size=(3, 3), rarefaction=(2, 2), padding=(2, 2))
        >>> dense(torch.randn(1, 1, 10, 10)).shape           # net(x) would be (1, 2, 4, 4)
        torch.Size([1, 2, 8, 8])
        >>> dense.load_state_dict(net.state_dict())
        <All keys matched successfully>
    """
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"rarefy expects an nn.Sequential, got {type(net).__name__}")
    out, _ = _rarefy_layer(net, (1, 1), type(net).__name__)
    return out


def total_stride(net: nn.Sequential):
    """The product of the strides of the sequential net's convs and pools, as (rows, cols)."""
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"total_stride expects an nn.Sequential, got {type(net).__name__}")
    return _rarefy_layer(net, (1, 1), type(net).__name__)[1]
