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
    if len(shape) != 3 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
                                  for v in shape):
        raise ValueError(f"input_shape must be three positive ints (C, h, w), got {input_shape!r}")
    c, h, w = (int(v) for v in shape)
    if c * h * w != in_features:
        raise ValueError(f"input_shape {shape} holds {c * h * w} features but the linear layer reads "
                         f"{in_features}")
    return c, h, w


def convolutionalize(linear: nn.Linear, input_shape) -> nn.Conv2d:
    """The nn.Conv2d(C, out_features, (h, w)) equivalent to `linear` reading a flattened (C, h, w) map.

    `input_shape` is (C, h, w) (or C for a 1x1 map), the shape whose C-major flattening
    (``x.flatten(1)``, as torchvision's VGG does before its classifier) is the linear layer's input.
    On an (N, C, h, w) map the result is the linear layer's output as (N, out, 1, 1); on a larger map
    it is the classifier applied to every h x w window, stride 1. Weights are copied (the new
    layer shares no storage with `linear`), on the same device and dtype, with the same requires_grad.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"convolutionalize expects nn.Linear, got {type(linear).__name__}")
    c, h, w = _shape(input_shape, linear.in_features)
    weight = linear.weight
    conv = nn.Conv2d(c, linear.out_features, (h, w), bias=linear.bias is not None, device="meta")
    with torch.no_grad():
        conv.weight = nn.Parameter(weight.detach().reshape(linear.out_features, c, h, w).clone(),
                                   requires_grad=weight.requires_grad)
        if linear.bias is not None:
            conv.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=linear.bias.requires_grad)
    return conv
