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
    """Dense output of `fn` (a net of total stride `factor`) by the paper's shift-and-stitch.

    For every shift (dy, dx), 0 <= dy < fy, 0 <= dx < fx (factor is an int or a pair (fy, fx)):

        out[..., y * fy + dy, x * fx + dx] = fn(x[..., dy:, dx:])[..., y, x]

    Shift convention: shifting by (dy, dx) *crops* the first dy rows and dx columns of the input; nothing
    is zero-filled, so later shifts see slightly smaller inputs. With this convention the dense position
    Y = y * f + dy reads the input pixels Y + c where output y of fn reads y * f + c: exactly what output Y
    of `rarefy(net)` reads, so the two can be compared position by position.

    The result has size (..., Hd, Wd) with Hd = min over dy of (dy + fy * h_dy), h_dy the height of the
    passes with row shift dy (Wd alike): the largest top-left block that the passes fill completely.
    Differentiable in x. Costs fy * fx passes of fn.
    """
    fy, fx = pair(factor, "factor", minimum=1)
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise TypeError(f"x must be a tensor with at least 2 (spatial) dimensions, got "
                        f"{type(x).__name__ if not isinstance(x, torch.Tensor) else tuple(x.shape)}")
    if x.shape[-2] < fy or x.shape[-1] < fx:
        raise ValueError(f"x's spatial size {tuple(x.shape[-2:])} is smaller than the factor {(fy, fx)}")
    outs = {}
    for dy in range(fy):
        for dx in range(fx):
            outs[dy, dx] = fn(x[..., dy:, dx:])
    first = outs[0, 0]
    for (dy, dx), o in outs.items():
        if not isinstance(o, torch.Tensor) or o.dim() < 2 or o.shape[:-2] != first.shape[:-2]:
            raise ValueError(f"fn's outputs must be tensors of the same leading shape; shift {(dy, dx)} gave "
                             f"{tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__}, "
                             f"shift (0, 0) gave {tuple(first.shape)}")
    hd = min(dy + fy * o.shape[-2] for (dy, dx), o in outs.items())
    wd = min(dx + fx * o.shape[-1] for (dy, dx), o in outs.items())
    if hd <= 0 or wd <= 0:
        raise ValueError(f"fn gave an empty output for input {tuple(x.shape)}")
    out = first.new_empty(*first.shape[:-2], hd, wd)
    for (dy, dx), o in outs.items():
        if dy < hd and dx < wd:  # rows dy, dy + fy, ... below hd: ceil((hd - dy) / fy) of them
            out[..., dy::fy, dx::fx] = o[..., :_ceil_div(hd - dy, fy), :_ceil_div(wd - dx, fx)]
    return out


# Layers that act on each spatial position independently: copied unchanged.
_POINTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.LocalResponseNorm,
)
# Pointwise only in eval mode (batch statistics or random masks differ between the shifted passes).
_POINTWISE_EVAL = (nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _unsupported(path, m, why=""):
    return TypeError(f"rarefy: unsupported layer {path} ({type(m).__name__}){why}; supported: nn.Sequential "
                     f"(nested), nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, and pointwise layers (activations; "
                     f"BatchNorm2d and dropout in eval mode)")


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
        return (RarefiedMaxPool2d(kernel, _scale(dilation, r), _scale(pair(m.padding, "padding"), r)),
                _scale(stride, r))
    if isinstance(m, nn.AvgPool2d):
        kernel = pair(m.kernel_size, "kernel_size")
        stride = pair(m.stride if m.stride is not None else m.kernel_size, "stride")
        return (RarefiedAvgPool2d(kernel, r, _scale(pair(m.padding, "padding"), r), m.count_include_pad,
                                  m.divisor_override), _scale(stride, r))
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
    """A copy of the sequential `net` whose one stride-1 pass gives shift-and-stitch's dense output.

    Every stride becomes 1, and every conv and pool after a stride is rarefied by the product s of the
    strides before it (the paper's f'[i, j] = f[i / s, j / s]): dilation * s, padding * s. Convs become
    `RarefiedConv2d` (same `weight`/`bias`, so `rarefy(net).load_state_dict(net.state_dict())` works),
    max pools `RarefiedMaxPool2d`, average pools `RarefiedAvgPool2d` (same count_include_pad and
    divisor_override semantics). Supported: nested nn.Sequential, nn.Conv2d (padding_mode 'zeros'),
    nn.MaxPool2d (no return_indices), nn.AvgPool2d, pointwise layers (activations; BatchNorm2d and
    dropout in eval mode). Anything else is a TypeError naming the layer.

    Equivalence: rarefy(net)(x) == shift_and_stitch(net, x, total_stride(net)) on every position where
    neither takes a value from padding (bottom/right: also where the coarse net dropped a partial window).
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
