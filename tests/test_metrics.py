"""The paper's four metrics (section 5) against their definitions, computed by hand."""

import math

import numpy as np
import pytest
import torch

from fcn_kernels.metrics import (
    ConfusionMatrix,
    confusion_matrix,
    fw_iu,
    mean_acc,
    mean_iu,
    pixel_acc,
    segmentation_scores,
)


def hand_scores(pred, target, n_cl, ignore=255):
    """Literal transcription of the paper's formulas, with plain loops."""
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    n = [[0] * n_cl for _ in range(n_cl)]  # n[i][j]: pixels of class i predicted as j
    for p, t in zip(pred, target):
        if t == ignore:
            continue
        n[int(t)][int(p)] += 1
    t_ = [sum(n[i]) for i in range(n_cl)]
    col = [sum(n[j][i] for j in range(n_cl)) for i in range(n_cl)]
    acc = sum(n[i][i] for i in range(n_cl)) / sum(t_)
    accs = [n[i][i] / t_[i] for i in range(n_cl) if t_[i] > 0]
    ius = [n[i][i] / (t_[i] + col[i] - n[i][i]) for i in range(n_cl) if t_[i] + col[i] - n[i][i] > 0]
    fw = sum(t_[i] * n[i][i] / (t_[i] + col[i] - n[i][i]) for i in range(n_cl) if t_[i] > 0) / sum(t_)
    return {"pixel_acc": acc, "mean_acc": sum(accs) / len(accs), "mean_iu": sum(ius) / len(ius), "fw_iu": fw}


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_definitions(seed):
    g = torch.Generator().manual_seed(seed)
    n_cl = int(torch.randint(2, 8, (1,), generator=g))
    target = torch.randint(0, n_cl, (2, 13, 17), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    # a prediction correlated with the target, so the scores are not trivial
    pred = torch.where(
        torch.rand(target.shape, generator=g) < 0.6,
        target.clamp(max=n_cl - 1),
        torch.randint(0, n_cl, target.shape, generator=g),
    )
    got = segmentation_scores(pred, target, n_cl)
    want = hand_scores(pred.numpy(), target.numpy(), n_cl)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12), k


def test_absent_classes_left_out_of_means():
    # class 2 appears neither in the target nor in the prediction; class 3 only in the prediction
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 3, 1, 1]])
    s = segmentation_scores(pred, target, 4)
    assert s["pixel_acc"] == pytest.approx(3 / 4)
    assert s["mean_acc"] == pytest.approx((1 / 2 + 1) / 2)  # classes 0, 1
    assert s["mean_iu"] == pytest.approx((1 / 2 + 1 + 0) / 3)  # classes 0, 1, 3 (IU 0)
    assert s["fw_iu"] == pytest.approx((2 * 0.5 + 2 * 1.0) / 4)
    for k, v in hand_scores(pred, target, 4).items():
        assert s[k] == pytest.approx(v)


def test_perfect_prediction_and_scores_input():
    target = torch.randint(0, 5, (3, 8, 8))
    scores = torch.nn.functional.one_hot(target, 5).permute(0, 3, 1, 2).float()  # (N, C, H, W)
    s = segmentation_scores(scores, target, 5)
    assert all(v == pytest.approx(1.0) for v in s.values())


def test_confusion_matrix_layout_and_ignore():
    target = torch.tensor([0, 1, 1, 2, 255])
    pred = torch.tensor([0, 2, 1, 2, 0])
    h = confusion_matrix(pred, target, 3)
    assert h.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]  # rows: truth, columns: prediction
    assert pixel_acc(h) == pytest.approx(3 / 4)
    assert mean_acc(h) == pytest.approx((1 + 0.5 + 1) / 3)
    assert mean_iu(h) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert fw_iu(h) == pytest.approx((1 * 1 + 2 * 0.5 + 1 * 0.5) / 4)


def test_streaming_equals_one_shot():
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 6, (6, 9, 11), generator=g)
    target[:, 0] = 255
    pred = torch.randint(0, 6, (6, 9, 11), generator=g)
    cm = ConfusionMatrix(6)
    for i in range(6):
        cm.update(pred[i : i + 1], target[i : i + 1])
    assert cm.hist.dtype == torch.int64 and int(cm.hist.sum()) == 6 * 8 * 11
    assert cm.compute() == segmentation_scores(pred, target, 6)
    cm.reset()
    assert int(cm.hist.sum()) == 0


def test_bad_labels_are_errors():
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        segmentation_scores(torch.tensor([0, 1]), torch.tensor([0, 7]), 3)
    with pytest.raises(ValueError, match="predicted"):
        segmentation_scores(torch.tensor([0, 5]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="does not match"):
        segmentation_scores(torch.zeros(2, 3), torch.zeros(3, 2), 3)


def test_empty_is_nan():
    s = segmentation_scores(torch.tensor([1, 2]), torch.tensor([255, 255]), 3)
    assert all(math.isnan(v) for v in s.values())
