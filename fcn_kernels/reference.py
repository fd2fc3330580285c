"""The stock PyTorch compositions that every kernel must equal (docs/DESIGN.md §2).

Deliberately literal: these are the ground truth of the tests and the "stock"
side of the benchmarks. They do not validate beyond what PyTorch itself does;
the public ops validate before calling them.
"""

import torch
import torch.nn.functional as F

from ._args import pair
from .losses import pixelwise_cross_entropy


def upsample_skip(
    x, weight, bias=None, skip=None, *, stride, groups=1, out_offset=(0, 0), out_size=None, skip_offset=(0, 0)
):
    """conv_transpose2d, then crop [oy:oy+Ho, ox:ox+Wo], then add skip[sy:sy+Ho, sx:sx+Wo]."""
    stride = pair(stride, "stride")
    oy, ox = pair(out_offset, "out_offset")
    y = F.conv_transpose2d(x, weight, bias, stride=stride, groups=groups)
    ho, wo = pair(out_size, "out_size") if out_size is not None else (y.shape[-2] - oy, y.shape[-1] - ox)
    y = y[:, :, oy : oy + ho, ox : ox + wo]
    if skip is not None:
        sy, sx = pair(skip_offset, "skip_offset")
        y = y + skip[:, :, sy : sy + ho, sx : sx + wo]
    return y


def upsample_argmax(x, weight, bias=None, skip=None, **geometry):
    """upsample_skip(...).argmax(1): int64 labels (N, Ho, Wo), ties to the lowest class; geometry: upsample_skip's
    keywords (stride, groups, out_offset, out_size, skip_offset)."""
    return upsample_skip(x, weight, bias, skip, **geometry).argmax(1)


def _cross_entropy(scores, target, class_weight=None, **loss):
    """pixelwise_cross_entropy with the fused losses' keywords: class_weight, ignore_index, sample_p, generator,
    reduction (pixelwise_cross_entropy's defaults)."""
    return pixelwise_cross_entropy(scores, target, class_weight, **loss)


def upsample_cross_entropy(
    x, target, weight, bias=None, skip=None, *, stride, groups=1, out_offset=(0, 0), skip_offset=(0, 0), **loss
):
    """pixelwise_cross_entropy of upsample_skip's scores cropped to the target's size; loss: class_weight,
    ignore_index, sample_p, generator, reduction (pixelwise_cross_entropy's defaults)."""
    geometry = dict(stride=stride, groups=groups, out_offset=out_offset, skip_offset=skip_offset)
    scores = upsample_skip(x, weight, bias, skip, out_size=tuple(target.shape[-2:]), **geometry)
    return _cross_entropy(scores, target, **loss)


def interpolate_cross_entropy(x, target, *, align_corners=False, **loss):
    """pixelwise_cross_entropy of F.interpolate(x, size=target's, mode="bilinear")'s scores; loss: as in
    upsample_cross_entropy."""
    scores = F.interpolate(x, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=align_corners)
    return _cross_entropy(scores, target, **loss)


def interpolate_argmax(x, size, *, align_corners=False):
    """F.interpolate(x, size, mode="bilinear").argmax(1): int64 labels (N, Ho, Wo), ties to the lowest class."""
    return F.interpolate(x, size=tuple(pair(size, "size")), mode="bilinear", align_corners=align_corners).argmax(1)


def rarefy_filter(weight: torch.Tensor, s) -> torch.Tensor:
    r"""The paper's rarefied filter: ``f'[i, j] = f[i / s, j / s]`` where s divides i and j, else 0.

    Zeros are inserted between the taps, so ``F.conv2d(x, rarefy_filter(w, s))`` equals
    ``F.conv2d(x, w, dilation=s)`` and :func:`fcn_kernels.rarefied_conv2d`. Built explicitly, for references
    and tests; see docs/DESIGN.md §2.3.

    Args:
        weight (Tensor[..., Kh, Kw]): the filter; the leading dimensions are kept.
        s (int or Tuple[int, int]): the rarefaction (rows, cols), at least 1.

    Returns:
        Tensor[..., (Kh - 1) * sh + 1, (Kw - 1) * sw + 1]: in ``weight``'s dtype and device.

    Example::

        >>> import torch
        >>> from fcn_kernels import rarefy_filter
        >>> rarefy_filter(torch.tensor([[1., 2.], [3., 4.]]), 2)
        tensor([[1., 0., 2.],
                [0., 0., 0.],
                [3., 0., 4.]])
    """
    sh, sw = pair(s, "s", minimum=1)
    kh, kw = weight.shape[-2:]
    out = weight.new_zeros(*weight.shape[:-2], (kh - 1) * sh + 1, (kw - 1) * sw + 1)
    out[..., ::sh, ::sw] = weight
    return out


def rarefied_conv2d(x, weight, bias=None, *, rarefaction=1, padding=0, groups=1):
    """F.conv2d with dilation = rarefaction, stride 1."""
    return F.conv2d(
        x,
        weight,
        bias,
        stride=1,
        padding=pair(padding, "padding"),
        dilation=pair(rarefaction, "rarefaction"),
        groups=groups,
    )
