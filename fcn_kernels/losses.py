"""Pixelwise losses for whole-image training (paper section 3.4).

The paper trains on whole images with a per-pixel multinomial logistic loss
and shows that patchwise training is *loss sampling*: restricting the loss to
a random subset of the pixels of the whole-image loss. Class balancing (a
per-class weight on the loss) is the other knob it discusses.

    loss = normaliser^-1 * sum_i  m_i / p * w[y_i] * (-log softmax(x_i)[y_i])

over the pixels i whose label y_i is not ``ignore_index`` (255), where

- m_i ~ Bernoulli(p) independently per pixel (``sample_p = p``; p = 1 keeps
  all, as in the paper's final whole-image training). Dividing the kept terms
  by p makes the sampled loss, and so its gradient, an unbiased estimate of
  the unsampled one: E[m_i / p] = 1.
- w is the per-class weight (all ones by default); see ``class_weights``.
- the normaliser is the number of non-ignored pixels N_valid for
  ``reduction="mean"`` and 1 for ``"sum"`` (Caffe's unnormalised SoftmaxWithLoss,
  as in the reference's solver). It is deliberately *not* the sum of the weights
  (torch's ``F.cross_entropy(weight=...)`` convention) nor the number of kept
  pixels: with a fixed normaliser, each pixel's gradient is exactly
  m_i / p * w[y_i] times its unweighted, unsampled gradient.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "pixelwise_cross_entropy",
    "PixelwiseCrossEntropy",
    "class_frequencies",
    "class_weights",
]


def pixelwise_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    *,
    ignore_index: int = 255,
    sample_p: float = 1.0,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Per-pixel cross-entropy with an ignore label, class weights and loss sampling (paper 3.4).

    The loss of this module's docstring: each non-ignored pixel's ``-log softmax(logits)[target]``, times its
    class weight, kept with probability ``sample_p`` and then divided by it (an unbiased estimate of the
    unsampled loss), summed and divided by the number of non-ignored pixels (``"mean"``). Computed in float32
    (float64 for float64 logits), also under bf16 autocast.

    Args:
        logits (Tensor[N, C, H, W]): the class scores.
        target (Tensor[N, H, W]): int labels in [0, C), or ``ignore_index``.
        weight (Tensor[C], optional): per-class weights (see :func:`class_weights`). Default: None (ones).
        ignore_index (int): the label of pixels that do not count. Default: 255.
        sample_p (float): in (0, 1], the probability to keep each pixel's term. Default: 1.0.
        generator (torch.Generator, optional): drives the sampling, on the logits' device. Default: None.
        reduction (str): ``"mean"`` (divide by the number of non-ignored pixels; 0 if there are none),
            ``"sum"``, or ``"none"``. Default: ``"mean"``.

    Returns:
        Tensor: a scalar for ``"mean"`` and ``"sum"``; Tensor[N, H, W] of the terms for ``"none"`` (zero at
        ignored and dropped pixels). float32, or float64 for float64 logits.

    Raises:
        ValueError: mismatched shapes, a label outside [0, C) other than ``ignore_index``, or a bad
        ``sample_p`` or ``reduction``.

    Example::

        >>> import torch
        >>> from fcn_kernels.losses import pixelwise_cross_entropy
        >>> logits = torch.zeros(1, 4, 2, 2)                  # uniform over 4 classes: log(4) a pixel
        >>> target = torch.tensor([[[0, 1], [2, 255]]])       # one ignored pixel
        >>> pixelwise_cross_entropy(logits, target)
        tensor(1.3863)
        >>> pixelwise_cross_entropy(logits, target, reduction="sum")
        tensor(4.1589)
    """
    check_loss_arguments(sample_p, reduction)
    if logits.dim() != target.dim() + 1 or logits.shape[2:] != target.shape[1:] or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match "
            "(expected (N, C, H, W) and (N, H, W))"
        )
    target = target.long()
    valid = target != ignore_index
    n_class = logits.shape[1]
    check_labels(target, n_class, ignore_index, valid)
    # float32 log-softmax even under bf16 autocast
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    terms = F.cross_entropy(logits, target, reduction="none", ignore_index=ignore_index)
    return weigh_and_reduce(terms, target, valid, weight, n_class, sample_p, generator, reduction)


def check_labels(target, n_class, ignore_index, valid=None):
    """ValueError naming the labels of target outside [0, n_class) that are not ignore_index (valid: target !=
    ignore_index, if computed already). Reads the labels: eager only (a data-dependent branch)."""
    valid = target != ignore_index if valid is None else valid
    bad = valid & ((target < 0) | (target >= n_class))
    if bool(bad.any()):
        vals = torch.unique(target[bad]).tolist()[:10]
        raise ValueError(f"target labels {vals} are outside [0, {n_class}) and are not the ignore label {ignore_index}")


def check_loss_arguments(sample_p, reduction):
    """ValueError unless sample_p is in (0, 1] and reduction is "mean", "sum" or "none"."""
    if not 0.0 < sample_p <= 1.0:
        raise ValueError(f"sample_p must be in (0, 1], got {sample_p}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def weigh_and_reduce(terms, target, valid, weight, n_class, sample_p, generator, reduction):
    """The loss from the per-pixel cross-entropy terms (N, H, W) (0 at ignored pixels; target int64, valid
    = target != ignore_index): the class weights, the loss sampling and the reduction of the module
    docstring. Shared with the fused losses (fcn_kernels.upsample_cross_entropy, docs/DESIGN.md §2.5), so
    that they keep the pixels this function keeps with the same generator state."""
    if weight is not None:
        w = torch.as_tensor(weight, dtype=terms.dtype, device=terms.device)
        terms = terms * w[target.clamp(0, n_class - 1)]
    terms = terms * valid
    if sample_p < 1.0:
        keep = torch.rand(terms.shape, generator=generator, device=terms.device) < sample_p
        terms = terms * keep / sample_p
    if reduction == "none":
        return terms
    total = terms.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp_min(1)


class PixelwiseCrossEntropy(nn.Module):
    r"""Module form of :func:`pixelwise_cross_entropy`; the class weights are kept as a buffer.

    Args:
        weight (Tensor[C] or sequence, optional): per-class weights, stored as float32. Default: None.
        ignore_index (int): Default: 255.
        sample_p (float): in (0, 1]. Default: 1.0.
        reduction (str): ``"mean"``, ``"sum"`` or ``"none"``. Default: ``"mean"``.

    Example::

        >>> import torch
        >>> from fcn_kernels.losses import PixelwiseCrossEntropy
        >>> loss = PixelwiseCrossEntropy(weight=[1.0, 2.0], sample_p=0.5)
        >>> logits, target = torch.zeros(2, 2, 8, 8), torch.randint(0, 2, (2, 8, 8))
        >>> value = loss(logits, target, generator=torch.Generator().manual_seed(0))
        >>> value.shape, bool(value > 0)
        (torch.Size([]), True)
    """

    def __init__(self, weight=None, ignore_index: int = 255, sample_p: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.ignore_index = ignore_index
        self.sample_p = sample_p
        self.reduction = reduction

    def forward(self, logits, target, generator=None):
        r"""The loss of ``logits`` against ``target``.

        Args:
            logits (Tensor[N, C, H, W]): the class scores.
            target (Tensor[N, H, W]): int labels in [0, C), or ``ignore_index``.
            generator (torch.Generator, optional): drives the sampling. Default: None.

        Returns:
            Tensor: as :func:`pixelwise_cross_entropy` returns for this ``reduction``.
        """
        return pixelwise_cross_entropy(
            logits,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            sample_p=self.sample_p,
            generator=generator,
            reduction=self.reduction,
        )


def class_frequencies(labels, n_class: int, ignore_index: int = 255) -> torch.Tensor:
    r"""Pixel counts per class over a collection of label maps, for :func:`class_weights`.

    Args:
        labels (Iterable): label maps (tensors or arrays of any shape), or (image, label) pairs such as a
            data set yields.
        n_class (int): the number of classes C.
        ignore_index (int): the label of pixels that are not counted. Default: 255.

    Returns:
        Tensor[C]: float64 counts, on the CPU.

    Raises:
        ValueError: a label outside [0, C) other than ``ignore_index``.

    Example::

        >>> import torch
        >>> from fcn_kernels.losses import class_frequencies
        >>> class_frequencies([torch.tensor([[0, 0, 1], [2, 255, 0]])], n_class=3)
        tensor([3., 1., 1.], dtype=torch.float64)
    """
    counts = torch.zeros(n_class, dtype=torch.float64)
    for item in labels:
        lab = item[1] if isinstance(item, (tuple, list)) else item
        lab = torch.as_tensor(lab).reshape(-1).long()
        lab = lab[lab != ignore_index]
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= n_class):
            raise ValueError(f"label outside [0, {n_class}) other than {ignore_index}")
        counts += torch.bincount(lab, minlength=n_class).double().cpu()
    return counts


def class_weights(counts, method: str = "median") -> torch.Tensor:
    r"""Class-balancing weights from per-class pixel counts.

    With ``f_c = count_c / sum(count)`` the class frequencies, over the classes present:

    - ``"median"``: median frequency balancing, ``w_c = median(f) / f_c`` (Eigen & Fergus); the class of
      median frequency gets weight 1.
    - ``"inverse"``: ``w_c = 1 / (K f_c)``, K the number of present classes, so that ``sum_c f_c w_c = 1``:
      the expected weight of a pixel is 1 and every class carries the same total weight.

    Classes absent from the counts get the largest weight of the present ones.

    Args:
        counts (Tensor[C] or sequence): pixel counts per class (e.g. :func:`class_frequencies`).
        method (str): ``"median"`` or ``"inverse"``. Default: ``"median"``.

    Returns:
        Tensor[C]: float32 weights, for :func:`pixelwise_cross_entropy`'s ``weight``.

    Raises:
        ValueError: no class is present, or an unknown ``method``.

    Example::

        >>> from fcn_kernels.losses import class_weights
        >>> class_weights([10, 40, 50, 0])
        tensor([4.0000, 1.0000, 0.8000, 4.0000])
        >>> class_weights([10, 40, 50, 0], method="inverse")
        tensor([3.3333, 0.8333, 0.6667, 3.3333])
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    present = counts > 0
    if not bool(present.any()):
        raise ValueError("no labelled pixels to compute class weights from")
    f = counts / counts.sum()
    w = torch.zeros_like(f)
    if method == "median":
        w[present] = f[present].quantile(0.5) / f[present]
    elif method == "inverse":
        w[present] = 1.0 / (int(present.sum()) * f[present])
    else:
        raise ValueError(f"method must be 'median' or 'inverse', got {method!r}")
    w[~present] = w[present].max()
    return w.float()
