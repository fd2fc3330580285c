"""Convolutionalization (Long et al., paper 3.1): a fully connected layer as a convolution."""

import numbers

import torch
from torch import nn


def _shape(input_shape, in_features):
    if isinstance(input_shape, numbers.Integral) and not isinstance(input_shape, bool):
        input_shape = (int(input_shape), 1, 1)
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"input_shape must be (C, h, w) or C, got {input_shape!r}") from None
    if len(shape) != 3 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in shape
    ):
        raise ValueError(f"input_shape must be three positive ints (C, h, w), got {input_shape!r}")
    c, h, w = (int(v) for v in shape)
    if c * h * w != in_features:
        raise ValueError(f"input_shape {shape} holds {c * h * w} features but the linear layer reads {in_features}")
    return c, h, w


def convolutionalize(linear: nn.Linear, input_shape) -> nn.Conv2d:
    r"""A fully connected layer as the equivalent convolution (the paper's section 3.1).

    Returns ``nn.Conv2d(C, out_features, (h, w))`` computing ``linear`` on every h x w window of a map, stride
    1: on an (N, C, h, w) map its output is ``linear(x.flatten(1))`` as (N, out_features, 1, 1); on a larger
    map, the classifier slid over it. See docs/DESIGN.md §3.

    Args:
        linear (nn.Linear): reads a C-major flattened (C, h, w) map (``x.flatten(1)``, as torchvision's VGG
            does before its classifier); ``in_features`` must be ``C * h * w``.
        input_shape (Tuple[int, int, int] or int): (C, h, w) of that map, or C for a 1 x 1 map.

    Returns:
        nn.Conv2d: weight (out_features, C, h, w) and bias (out_features,) copied from ``linear`` (no shared
        storage), on its device and dtype, with its requires_grad.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> from fcn_kernels import convolutionalize
        >>> fc = nn.Linear(8 * 7 * 7, 16)
        >>> conv = convolutionalize(fc, (8, 7, 7))
        >>> conv
        Conv2d(8, 16, kernel_size=(7, 7), stride=(1, 1))
        >>> x = torch.randn(2, 8, 7, 7)
        >>> torch.allclose(conv(x).flatten(1), fc(x.flatten(1)), atol=1e-6)
        True
        >>> conv(torch.randn(2, 8, 10, 12)).shape             # every 7 x 7 window
        torch.Size([2, 16, 4, 6])
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"convolutionalize expects nn.Linear, got {type(linear).__name__}")
    c, h, w = _shape(input_shape, linear.in_features)
    weight = linear.weight
    conv = nn.Conv2d(c, linear.out_features, (h, w), bias=linear.bias is not None, device="meta")
    with torch.no_grad():
        conv.weight = nn.Parameter(
            weight.detach().reshape(linear.out_features, c, h, w).clone(), requires_grad=weight.requires_grad
        )
        if linear.bias is not None:
            conv.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=linear.bias.requires_grad)
    return conv
