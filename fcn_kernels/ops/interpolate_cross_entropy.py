"""fcn_kernels.interpolate_cross_entropy and interpolate_argmax: a bilinear head's upsampling with its loss,
or with its labels, never building the full-resolution scores (docs/DESIGN.md §2.6)."""

import torch

from .. import _ext, backends, reference
from .._args import check_extent, check_planes, check_tensor, pair
from .._autograd.losses import register_interpolate_logsumexp
from .upsample_cross_entropy import check_loss, check_target, loss_from_statistics, stats_dtype


def validate(x, size, align_corners, what="size"):
    """Checks x (N, C, H, W) and the output size (Ho, Wo) of F.interpolate(x, size, mode="bilinear");
    returns the size as a pair."""
    check_tensor(x, "x", 4)
    if not isinstance(align_corners, bool):
        raise TypeError(f"align_corners must be a bool, got {align_corners!r}")
    n, c, h, w = x.shape
    if c < 1 or h < 1 or w < 1:
        raise ValueError(f"x must have non-empty channel and spatial sizes, got shape {tuple(x.shape)}")
    size = pair(size, what)
    if min(size) < 1:
        raise ValueError(f"{what} must be >= 1 (F.interpolate's output size), got {size}")
    check_extent(max(size), lambda: f"{what} {size}")
    check_planes(c, h, w, lambda: f"x of shape {tuple(x.shape)}")
    check_planes(c, *size, lambda: f"{what} {size} (with {c} channels)")
    check_extent(n * c * size[0] * size[1], lambda: f"the scores ({n}, {c}, {size[0]}, {size[1]}) of {what} {size}")
    return size


def interpolate_cross_entropy(
    x,
    target,
    *,
    align_corners=False,
    class_weight=None,
    ignore_index=255,
    sample_p=1.0,
    generator=None,
    reduction="mean",
    backend=None,
):
    r"""A bilinear head's upsampling and the pixelwise cross-entropy in one, from the coarse scores.

    Computes ``pixelwise_cross_entropy(F.interpolate(x, size=target.shape[-2:], mode="bilinear",
    align_corners=align_corners), target, class_weight, ...)`` (the loss of torchvision's and mmsegmentation's
    bilinear heads) in value and gradient, without any tensor of the scores' size (N, C, Ho, Wo), forward or
    backward. The result equals :func:`fcn_kernels.reference.interpolate_cross_entropy`; see docs/DESIGN.md
    §2.6 for the full contract.

    Args:
        x (Tensor[N, C, H, W]): the coarse class scores.
        target (Tensor[N, Ho, Wo]): integer labels in [0, C) or ``ignore_index``; any output size (the target's),
            up or down, integer scale or not, with PyTorch's source coordinates exactly.
        align_corners (bool): as ``F.interpolate``'s. Default: False.
        class_weight, ignore_index, sample_p, generator, reduction: as
            :func:`fcn_kernels.upsample_cross_entropy`'s (the sampling draws as
            :func:`~fcn_kernels.losses.pixelwise_cross_entropy` draws).
        backend (str, optional): ``"cpu"``, ``"triton"`` or ``"reference"``; None: the automatic choice.
            Default: None.

    Returns:
        Tensor: a scalar for ``"mean"`` and ``"sum"``; Tensor[N, Ho, Wo] of the terms for ``"none"``. float32,
        or float64 for float64 ``x``. Differentiable (once) in ``x`` (and ``class_weight``).

    Raises:
        ValueError, TypeError: an argument of the wrong shape, dtype or device, a label outside [0, C) other
        than ``ignore_index``.

    Example::

        >>> import torch
        >>> import torch.nn.functional as F
        >>> from fcn_kernels import interpolate_cross_entropy
        >>> from fcn_kernels.losses import pixelwise_cross_entropy
        >>> x = torch.randn(2, 150, 16, 16, requires_grad=True)   # ADE20K's 150 classes, 1/8 resolution
        >>> target = torch.randint(0, 150, (2, 128, 128))
        >>> loss = interpolate_cross_entropy(x, target)
        >>> loss.backward()                                       # no (2, 150, 128, 128) tensor, either way
        >>> scores = F.interpolate(x, size=(128, 128), mode="bilinear")
        >>> torch.testing.assert_close(loss, pixelwise_cross_entropy(scores, target))
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(
            f"x must be a 4-D tensor (N, C, H, W), got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    check_target(target, x)
    size = validate(x, tuple(target.shape[1:]), align_corners, "target's spatial size")
    n_class = x.shape[1]
    loss = check_loss(n_class, class_weight, ignore_index, sample_p, generator, reduction)
    which = backends.resolve(backend, x.device, "interpolate_cross_entropy", channels=n_class, out_size=size)
    if which == "reference":
        return reference.interpolate_cross_entropy(x, target, align_corners=align_corners, **loss)
    target = target.long()
    if which == "triton":
        from ..triton import interpolate_cross_entropy as triton_impl

        lse, picked = triton_impl.interpolate_logsumexp(x, target, align_corners, loss["ignore_index"])
    else:
        lse, picked = torch.ops.fcn_kernels.interpolate_logsumexp(x, target, align_corners, loss["ignore_index"])
    return loss_from_statistics(lse, picked, target, n_class, **loss)


def interpolate_argmax(x, size, *, align_corners=False, backend=None):
    r"""The labels of a bilinear head, without its full-resolution scores.

    Computes ``F.interpolate(x, size, mode="bilinear", align_corners=align_corners).argmax(1)`` one output row
    at a time, never writing the (N, C, Ho, Wo) scores. Each score is computed as ``F.interpolate`` computes
    it (PyTorch's source coordinates and blend order, weights and sums in float32, float64 for float64 ``x``)
    and rounded to ``x``'s dtype; the first maximum is taken in ``torch.argmax``'s order (NaN counts as the
    largest; the lowest class wins ties). See docs/DESIGN.md §2.6.

    Args:
        x (Tensor[N, C, H, W]): the class scores.
        size (int or Tuple[int, int]): the output size (Ho, Wo), each >= 1.
        align_corners (bool): as ``F.interpolate``'s. Default: False.
        backend (str, optional): ``"cpu"``, ``"triton"`` or ``"reference"``; None: the automatic choice.
            Default: None.

    Returns:
        Tensor[N, Ho, Wo]: int64 labels. Not differentiable.

    Example::

        >>> import torch
        >>> import torch.nn.functional as F
        >>> from fcn_kernels import interpolate_argmax
        >>> x = torch.randn(1, 150, 16, 16)
        >>> labels = interpolate_argmax(x, (128, 128))
        >>> labels.shape
        torch.Size([1, 128, 128])
        >>> torch.equal(labels, F.interpolate(x, size=(128, 128), mode="bilinear").argmax(1))
        True
    """
    size = validate(x, size, align_corners)
    which = backends.resolve(backend, x.device, "interpolate_argmax", channels=x.shape[1], out_size=size)
    if which == "reference":
        return reference.interpolate_argmax(x, size, align_corners=align_corners)
    if which == "triton":
        from ..triton import interpolate_argmax as triton_impl

        return triton_impl.interpolate_argmax(x, size, align_corners)
    return torch.ops.fcn_kernels.interpolate_argmax(x, list(size), align_corners)


if _ext.HAS_EXTENSION and _ext.has_kernel("interpolate_logsumexp", "CPU"):

    @torch.library.register_fake("fcn_kernels::interpolate_logsumexp")
    def _fake(x, target, align_corners, ignore_index):
        check_target(target, x)
        validate(x, tuple(target.shape[1:]), align_corners, "target's spatial size")
        shape = (x.shape[0],) + tuple(target.shape[1:])
        return x.new_empty(shape, dtype=stats_dtype(x.dtype)), x.new_empty(shape, dtype=stats_dtype(x.dtype))

    @torch.library.register_fake("fcn_kernels::interpolate_logsumexp_backward")
    def _fake_backward(grad_lse, grad_picked, x, target, lse, align_corners, ignore_index):
        return x.new_empty(x.shape)

    @torch.library.register_fake("fcn_kernels::interpolate_argmax")
    def _fake_argmax(x, size, align_corners):
        size = validate(x, size, align_corners)
        return x.new_empty((x.shape[0], *size), dtype=torch.int64)

    register_interpolate_logsumexp(
        torch.ops.fcn_kernels.interpolate_logsumexp.default,
        torch.ops.fcn_kernels.interpolate_logsumexp_backward.default,
    )
