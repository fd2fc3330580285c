"""fcn_kernels.upsample_argmax: FCN's last stage as labels, without the full-resolution scores (docs/DESIGN.md §2)."""

import torch

from .. import _ext
from .._args import autocast_inputs
from .upsample_skip import dispatch, register_fake, resolve, validate


def upsample_argmax(
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
    r"""FCN's last stage as labels: ``upsample_skip(...).argmax(dim=1)`` without the full-resolution scores.

    Each score is computed as the backend's :func:`upsample_skip` computes it (accumulated in float32,
    float64 for float64 inputs, rounded once to ``x``'s dtype) and the label is the first maximum of those
    rounded scores in ``torch.argmax``'s order (NaN counts as the largest; the lowest class wins ties); the
    (N, Cout, Ho, Wo) scores are never written. On the CPU backend the labels equal
    ``upsample_skip(..., backend="cpu").argmax(1)`` exactly, ties included. Against the exact (float64
    reference) scores, a label can differ only where the exact scores of the chosen and the true class are
    within upsample_skip's error bound of each other. See docs/DESIGN.md §2.2.

    Args:
        x (Tensor[N, Cin, H, W]): the coarse input (class scores).
        weight (Tensor[Cin, Cout // groups, Kh, Kw]): the filters, in ``nn.ConvTranspose2d``'s layout.
        bias (Tensor[Cout], optional): added to every score. Default: None.
        skip (Tensor[N, Cout, Hs, Ws], optional): the map whose window is added. Default: None.
        stride, groups, out_offset, out_size, skip_offset, backend: as in :func:`upsample_skip`.

    Not differentiable (the labels are integers; inputs that require grad are accepted).

    Returns:
        Tensor[N, Ho, Wo]: int64 class indices in [0, Cout).

    Example::

        >>> import torch
        >>> from fcn_kernels import bilinear_kernel, upsample_argmax, upsample_skip
        >>> x = torch.zeros(1, 3, 2, 2)
        >>> x[0, 2, 0, 0] = 1.0                               # class 2 scores highest near the top left
        >>> weight = bilinear_kernel(3, 4, groups=3)          # (3, 1, 4, 4): bilinear upsampling by 2
        >>> labels = upsample_argmax(x, weight, stride=2, groups=3, out_offset=1, out_size=4)
        >>> labels
        tensor([[[2, 2, 2, 0],
                 [2, 2, 2, 0],
                 [2, 2, 2, 0],
                 [0, 0, 0, 0]]])
        >>> torch.equal(labels, upsample_skip(x, weight, stride=2, groups=3, out_offset=1, out_size=4).argmax(1))
        True
    """
    x, weight, bias, skip = autocast_inputs(x, weight, bias, skip)
    geometry = validate(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset)
    which = resolve(backend, "upsample_argmax", x, weight, geometry, channels=weight.shape[1] * geometry[1])
    return dispatch("upsample_argmax", which, (x, weight, bias, skip), geometry)


if _ext.HAS_EXTENSION:
    register_fake(
        "upsample_argmax", lambda x, weight, groups, size: x.new_empty((x.shape[0], *size), dtype=torch.int64)
    )
