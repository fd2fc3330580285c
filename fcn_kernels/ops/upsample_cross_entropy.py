"""fcn_kernels.upsample_cross_entropy: FCN's last upsampling and the pixelwise loss in one, from the coarse
scores, never building the full-resolution logits (docs/DESIGN.md §2.5)."""

import torch

from .. import _ext, reference
from .._args import autocast_inputs, check_int
from .._autograd.losses import register_upsample_logsumexp
from ..losses import check_loss_arguments, weigh_and_reduce
from .upsample_skip import resolve, validate


def stats_dtype(dtype):
    """The statistics' and the loss's dtype: pixelwise_cross_entropy's float32 log-softmax, float64 for
    float64 scores."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_target(target, x, name="target", of_x="x's"):
    """target is an integer (N, Ho, Wo) tensor on x's device, N = x's batch; of_x names x in the errors."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of labels, got dtype {target.dtype}")
    if target.dim() != 3 or target.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must have shape (N, Ho, Wo) with N = {x.shape[0]} ({of_x} batch), got {tuple(target.shape)}"
        )
    if target.device != x.device:
        raise ValueError(f"{name} is on {target.device}, {of_x} device is {x.device}")


def check_class_weight(class_weight, n_class):
    if class_weight is None:
        return
    shape = tuple(class_weight.shape) if isinstance(class_weight, torch.Tensor) else (len(class_weight),)
    if shape != (n_class,):
        raise ValueError(f"class_weight must have shape ({n_class},) (one weight per class), got {shape}")


def check_loss(n_class, class_weight, ignore_index, sample_p, generator, reduction):
    """Checks the loss's arguments; returns them by name, as the references and loss_from_statistics take them."""
    ignore_index = check_int(ignore_index, "ignore_index")
    check_loss_arguments(sample_p, reduction)
    check_class_weight(class_weight, n_class)
    return dict(
        class_weight=class_weight,
        ignore_index=ignore_index,
        sample_p=sample_p,
        generator=generator,
        reduction=reduction,
    )


def loss_from_statistics(lse, picked, target, n_class, *, class_weight, ignore_index, sample_p, generator, reduction):
    """pixelwise_cross_entropy's loss from the statistics: term lse - picked at every labelled pixel (0 at
    the others, whatever their scores), then its class weights, sampling and reduction."""
    valid = target != ignore_index
    terms = torch.where(valid, lse - picked, 0)
    return weigh_and_reduce(terms, target, valid, class_weight, n_class, sample_p, generator, reduction)


def upsample_cross_entropy(
    x,
    target,
    weight,
    bias=None,
    skip=None,
    *,
    stride,
    groups=1,
    out_offset=(0, 0),
    skip_offset=(0, 0),
    class_weight=None,
    ignore_index=255,
    sample_p=1.0,
    generator=None,
    reduction="mean",
    backend=None,
):
    r"""FCN's last upsampling and the pixelwise cross-entropy in one, from the coarse scores.

    Computes ``pixelwise_cross_entropy(upsample_skip(x, weight, bias, skip, ..., out_size=target.shape[-2:]),
    target, class_weight, ...)`` in value and gradient, without any tensor of the scores' size (N, C, Ho, Wo),
    forward or backward: the forward keeps two (N, Ho, Wo) statistics, the backward recomputes each row's
    scores. The result equals :func:`fcn_kernels.reference.upsample_cross_entropy`; see docs/DESIGN.md §2.5
    for the full contract.

    Args:
        x (Tensor[N, Cin, H, W]): the coarse input (e.g. class scores).
        target (Tensor[N, Ho, Wo]): integer labels in [0, C), C = ``weight.shape[1] * groups``, or
            ``ignore_index``; its size is the crop window's.
        weight, bias, skip, stride, groups, out_offset, skip_offset: :func:`fcn_kernels.upsample_skip`'s.
        class_weight (Tensor[C], optional): per-class weights. Default: None (ones).
        ignore_index (int): the label of pixels that do not count. Default: 255.
        sample_p (float): in (0, 1], the probability to keep each pixel's term (kept terms are divided by it);
            the kept pixels are those :func:`~fcn_kernels.losses.pixelwise_cross_entropy` keeps with the same
            generator state. Default: 1.0.
        generator (torch.Generator, optional): drives the sampling, on ``x``'s device. Default: None.
        reduction (str): ``"mean"`` (over the non-ignored pixels), ``"sum"`` or ``"none"``. Default: ``"mean"``.
        backend (str, optional): ``"cpu"``, ``"triton"`` or ``"reference"``; None: the automatic choice of
            :mod:`fcn_kernels.backends` (docs/DESIGN.md §4.1). Default: None.

    Differentiable (once) in ``x``, ``weight``, ``bias`` and ``skip`` (and ``class_weight``); a weight that does
    not require grad costs no weight-gradient work. Under ``torch.autocast`` x, weight, bias and skip are cast
    as :func:`fcn_kernels.upsample_skip` casts them.

    Returns:
        Tensor: a scalar for ``"mean"`` and ``"sum"``; Tensor[N, Ho, Wo] of the terms for ``"none"``. float32,
        or float64 for float64 ``x``.

    Raises:
        ValueError, TypeError: an argument of the wrong shape, dtype or device, a window that does not fit, a
        label outside [0, C) other than ``ignore_index``.

    Example::

        >>> import torch
        >>> from fcn_kernels import bilinear_kernel, upsample_cross_entropy, upsample_skip
        >>> from fcn_kernels.losses import pixelwise_cross_entropy
        >>> x = torch.randn(1, 21, 11, 11, requires_grad=True)  # coarse scores of 21 classes
        >>> weight = bilinear_kernel(21, 16, groups=21)       # FCN-8s's upscore8: stride 8, kernel 16
        >>> target = torch.randint(0, 21, (1, 50, 50))
        >>> loss = upsample_cross_entropy(x, target, weight, stride=8, groups=21, out_offset=31)
        >>> loss.backward()                                   # no (1, 21, 50, 50) tensor, either way
        >>> scores = upsample_skip(x, weight, stride=8, groups=21, out_offset=31, out_size=(50, 50))
        >>> torch.testing.assert_close(loss, pixelwise_cross_entropy(scores, target))
    """
    x, weight, bias, skip = autocast_inputs(x, weight, bias, skip)  # as upsample_skip under torch.autocast
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(
            f"x must be a 4-D tensor (N, Cin, H, W), got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    check_target(target, x)
    stride, groups, out_offset, out_size, skip_offset = validate(
        x, weight, bias, skip, stride, groups, out_offset, tuple(target.shape[1:]), skip_offset
    )
    n_class = weight.shape[1] * groups
    loss = check_loss(n_class, class_weight, ignore_index, sample_p, generator, reduction)
    which = resolve(
        backend,
        "upsample_cross_entropy",
        x,
        weight,
        (stride, groups, out_offset, out_size, skip_offset),
        weight_grad=torch.is_grad_enabled() and weight.requires_grad,
        channels=n_class,
    )
    if which == "reference":
        geometry = dict(stride=stride, groups=groups, out_offset=out_offset, skip_offset=skip_offset)
        return reference.upsample_cross_entropy(x, target, weight, bias, skip, **geometry, **loss)
    target = target.long()
    if which == "triton":
        from ..triton.upsample_cross_entropy import upsample_logsumexp as statistics
    else:
        statistics = torch.ops.fcn_kernels.upsample_logsumexp
    lse, picked = statistics(
        x, weight, bias, skip, target, stride, groups, out_offset, skip_offset, loss["ignore_index"]
    )
    return loss_from_statistics(lse, picked, target, n_class, **loss)


if _ext.HAS_EXTENSION and _ext.has_kernel("upsample_logsumexp", "CPU"):

    @torch.library.register_fake("fcn_kernels::upsample_logsumexp")
    def _fake(x, weight, bias, skip, target, stride, groups, out_offset, skip_offset, ignore_index):
        check_target(target, x)
        validate(x, weight, bias, skip, stride, groups, out_offset, tuple(target.shape[1:]), skip_offset)
        shape = (x.shape[0],) + tuple(target.shape[1:])
        return x.new_empty(shape, dtype=stats_dtype(x.dtype)), x.new_empty(shape, dtype=stats_dtype(x.dtype))

    @torch.library.register_fake("fcn_kernels::upsample_logsumexp_backward")
    def _fake_backward(
        grad_lse,
        grad_picked,
        x,
        weight,
        bias,
        skip,
        target,
        lse,
        stride,
        groups,
        out_offset,
        skip_offset,
        ignore_index,
        output_mask,
    ):
        return tuple(
            t.new_empty(t.shape) if m and t is not None else x.new_empty((0,))
            for t, m in zip((x, weight, bias, skip), output_mask)
        )

    register_upsample_logsumexp(
        torch.ops.fcn_kernels.upsample_logsumexp.default, torch.ops.fcn_kernels.upsample_logsumexp_backward.default
    )
