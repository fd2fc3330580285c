"""The paper's four segmentation metrics (Long, Shelhamer, Darrell, section 5).

With n_ij the number of pixels of class i predicted to belong to class j,
n_cl the number of classes and t_i = sum_j n_ij the number of pixels of
class i:

- pixel accuracy:          sum_i n_ii / sum_i t_i
- mean accuracy:           (1 / n_cl) sum_i n_ii / t_i
- mean IU:                 (1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
- frequency weighted IU:   (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

As in the reference implementation (``score.py`` of the Caffe FCN release),
a class whose denominator is zero (it appears neither in the ground truth
nor in the prediction, or for mean accuracy not in the ground truth) is left
out of the class average (a NaN-mean), so n_cl counts the classes for which
the ratio is defined. Pixels labelled ``ignore_index`` (255, VOC's "void"
border) are not counted at all.

The confusion matrix is indexed ``hist[true, pred]`` (rows: ground truth).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "ConfusionMatrix",
    "confusion_matrix",
    "scores_from_confusion",
    "segmentation_scores",
    "pixel_acc",
    "mean_acc",
    "mean_iu",
    "fw_iu",
    "per_class_iu",
]


def _as_labels(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Accept a label map or scores (N, C, H, W) whose argmax over dim 1 is the label map."""
    if pred.dim() == target.dim() + 1:
        pred = pred.argmax(1)
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction of shape {tuple(pred.shape)} does not match target of shape "
            f"{tuple(target.shape)} (pass a label map, or scores with the classes on dim 1)"
        )
    return pred


def confusion_matrix(pred, target, n_class: int, ignore_index: int | None = 255, validate: bool = True) -> torch.Tensor:
    """The (n_class, n_class) int64 matrix hist[true, pred] on the inputs' device.

    pred: label map of target's shape, or scores (N, C, ...) to take the argmax of.
    Pixels whose target is ``ignore_index`` are skipped. With ``validate``, a target
    label outside [0, n_class) other than ``ignore_index`` (or a predicted label out
    of range) is an error rather than silently dropped.
    """
    pred = _as_labels(torch.as_tensor(pred), torch.as_tensor(target))
    target = torch.as_tensor(target, device=pred.device)
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    if validate:
        bad_t = keep & ((target < 0) | (target >= n_class))
        if bool(bad_t.any()):
            vals = torch.unique(target[bad_t]).tolist()[:10]
            raise ValueError(
                f"target labels {vals} are outside [0, {n_class}) and are not the ignore label {ignore_index}"
            )
        bad_p = keep & ((pred < 0) | (pred >= n_class))
        if bool(bad_p.any()):
            vals = torch.unique(pred[bad_p]).tolist()[:10]
            raise ValueError(f"predicted labels {vals} are outside [0, {n_class})")
    else:
        keep = keep & (target >= 0) & (target < n_class) & (pred >= 0) & (pred < n_class)
    idx = target[keep] * n_class + pred[keep]
    return torch.bincount(idx, minlength=n_class * n_class).reshape(n_class, n_class)


def _ratios(hist: torch.Tensor):
    h = hist.double()
    diag = torch.diagonal(h)
    t = h.sum(1)  # pixels of each true class
    p = h.sum(0)  # pixels predicted as each class
    union = t + p - diag
    return h, diag, t, union


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else math.nan


def per_class_iu(hist: torch.Tensor) -> torch.Tensor:
    """n_ii / (t_i + sum_j n_ji - n_ii) per class (NaN where the union is empty)."""
    _, diag, _, union = _ratios(hist)
    return diag / union  # 0/0 -> nan


def pixel_acc(hist: torch.Tensor) -> float:
    """sum_i n_ii / sum_i t_i."""
    h, diag, t, _ = _ratios(hist)
    total = float(t.sum())
    return float(diag.sum()) / total if total > 0 else math.nan


def mean_acc(hist: torch.Tensor) -> float:
    """(1 / n_cl) sum_i n_ii / t_i, over the classes present in the ground truth."""
    _, diag, t, _ = _ratios(hist)
    return _nanmean(diag / t)


def mean_iu(hist: torch.Tensor) -> float:
    """(1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii), over classes with a non-empty union."""
    return _nanmean(per_class_iu(hist))


def fw_iu(hist: torch.Tensor) -> float:
    """(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)."""
    _, diag, t, union = _ratios(hist)
    total = float(t.sum())
    if total == 0:
        return math.nan
    present = t > 0  # t_i > 0 implies union > 0
    return float((t[present] * diag[present] / union[present]).sum()) / total


def scores_from_confusion(hist: torch.Tensor) -> dict:
    """The four metrics (Python floats) from a confusion matrix hist[true, pred]."""
    hist = torch.as_tensor(hist)
    return {
        "pixel_acc": pixel_acc(hist),
        "mean_acc": mean_acc(hist),
        "mean_iu": mean_iu(hist),
        "fw_iu": fw_iu(hist),
    }


def segmentation_scores(pred, target, n_class: int, ignore_index: int = 255) -> dict:
    r"""The paper's four metrics (section 5) of a prediction against the ground truth.

    Pixel accuracy, mean accuracy, mean IU and frequency-weighted IU, as defined in this module's docstring
    and computed from the confusion matrix, as Caffe FCN's ``score.py``: a class whose ratio is undefined
    (0 / 0) is left out of the class averages. See docs/DESIGN.md §3.

    Args:
        pred (Tensor[N, H, W] or Tensor[N, C, H, W]): predicted labels of ``target``'s shape, or class
            scores with the classes on dim 1 (their argmax is taken).
        target (Tensor[N, H, W]): int labels in [0, n_class), or ``ignore_index``.
        n_class (int): the number of classes.
        ignore_index (int): the label of pixels that are not counted. Default: 255.

    Returns:
        Dict[str, float]: ``{"pixel_acc", "mean_acc", "mean_iu", "fw_iu"}``, each in [0, 1], or NaN when
        nothing is counted.

    Raises:
        ValueError: mismatched shapes, or a label outside [0, n_class) other than ``ignore_index``.

    Example::

        >>> import torch
        >>> from fcn_kernels.metrics import segmentation_scores
        >>> target = torch.tensor([[[0, 0, 1, 1]]])
        >>> pred = torch.tensor([[[0, 1, 1, 1]]])
        >>> segmentation_scores(pred, target, n_class=2)
        {'pixel_acc': 0.75, 'mean_acc': 0.75, 'mean_iu': 0.5833333333333333, 'fw_iu': 0.5833333333333333}
    """
    return scores_from_confusion(confusion_matrix(pred, target, n_class, ignore_index))


class ConfusionMatrix:
    r"""A confusion matrix accumulated over a data set, and the paper's four metrics from it.

    ``update(pred, target)`` adds a batch on the batch's device (no host copy of the images);
    ``compute()`` returns the metrics of :func:`segmentation_scores` over everything added;
    ``all_reduce()`` sums the matrices of all ranks of a ``torch.distributed`` group. The matrix is
    ``hist[true, pred]``, int64 (n_class, n_class).

    Args:
        n_class (int): the number of classes.
        ignore_index (int, optional): the label of pixels that are not counted; None counts all. Default: 255.
        device (torch.device, optional): where the matrix starts; it moves to the first batch's device while
            still empty. Default: None (CPU).
        validate (bool): True: a label out of range is a ValueError; False: such pixels are dropped.
            Default: True.

    Example::

        >>> import torch
        >>> from fcn_kernels.metrics import ConfusionMatrix
        >>> cm = ConfusionMatrix(n_class=2)
        >>> cm = cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
        >>> cm = cm.update(torch.tensor([[1, 1]]), torch.tensor([[1, 255]]))
        >>> cm.hist
        tensor([[1, 1],
                [0, 1]])
        >>> cm.compute()["pixel_acc"]
        0.6666666666666666
    """

    def __init__(self, n_class: int, ignore_index: int | None = 255, device=None, validate: bool = True):
        self.n_class = int(n_class)
        self.ignore_index = ignore_index
        self.validate = validate
        self.hist = torch.zeros(self.n_class, self.n_class, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.hist.zero_()

    @torch.no_grad()
    def update(self, pred, target) -> "ConfusionMatrix":
        r"""Add a batch to the matrix.

        Args:
            pred (Tensor[N, H, W] or Tensor[N, C, H, W]): predicted labels, or class scores on dim 1.
            target (Tensor[N, H, W]): int labels in [0, n_class), or ``ignore_index``.

        Returns:
            ConfusionMatrix: ``self``.
        """
        h = confusion_matrix(pred, target, self.n_class, self.ignore_index, self.validate)
        if h.device != self.hist.device:
            if self.hist.abs().sum() == 0:
                self.hist = self.hist.to(h.device)
            else:
                h = h.to(self.hist.device)
        self.hist += h
        return self

    def all_reduce(self, group=None) -> "ConfusionMatrix":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.hist, group=group)
        return self

    def per_class_iu(self) -> list:
        return per_class_iu(self.hist.cpu()).tolist()

    def compute(self) -> dict:
        r"""The four metrics of everything added so far.

        Returns:
            Dict[str, float]: as :func:`segmentation_scores` returns.
        """
        return scores_from_confusion(self.hist.cpu())

    def __repr__(self):
        return f"ConfusionMatrix(n_class={self.n_class}, pixels={int(self.hist.sum())})"
