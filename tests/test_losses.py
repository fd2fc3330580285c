"""Pixelwise loss (paper 3.4): ignore label, loss sampling, class weights."""

import pytest
import torch
import torch.nn.functional as F

from fcn_kernels.losses import PixelwiseCrossEntropy, class_frequencies, class_weights, pixelwise_cross_entropy


def _data(seed=0, n=2, c=4, h=6, w=7, void=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    target = torch.randint(0, c, (n, h, w), generator=g)
    target[torch.rand(n, h, w, generator=g) < void] = 255
    return logits, target


def test_matches_cross_entropy_ignoring_255():
    logits, target = _data()
    got = pixelwise_cross_entropy(logits, target)
    want = F.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(got.double(), want)
    s = pixelwise_cross_entropy(logits, target, reduction="sum")
    torch.testing.assert_close(s.double(), F.cross_entropy(logits, target, ignore_index=255, reduction="sum"))
    m = pixelwise_cross_entropy(logits, target, reduction="none")
    assert m.shape == target.shape and bool((m[target == 255] == 0).all())


def test_all_ignored_gives_zero_not_nan():
    logits, target = _data()
    target.fill_(255)
    assert float(pixelwise_cross_entropy(logits, target)) == 0.0


def test_sampling_is_unbiased_in_expectation():
    logits, target = _data(1, n=1, h=8, w=8)
    full = pixelwise_cross_entropy(logits, target)
    g = torch.Generator().manual_seed(0)
    for p in (0.25, 0.5):
        draws = torch.stack([pixelwise_cross_entropy(logits, target, sample_p=p, generator=g) for _ in range(1000)])
        # the mean of the draws is within 4 standard errors of the unsampled loss
        se = draws.std() / len(draws) ** 0.5
        assert abs(float(draws.mean() - full)) < 4 * float(se), (p, float(draws.mean()), float(full))
        assert float(draws.std()) > 0  # it does sample


def test_sampling_gradient_is_unbiased_and_masked():
    logits, target = _data(2, n=1, h=5, w=5, void=0.0)
    x = logits.clone().requires_grad_(True)
    pixelwise_cross_entropy(x, target).backward()
    full = x.grad.clone()
    g = torch.Generator().manual_seed(1)
    acc = torch.zeros_like(full)
    n = 1000
    for _ in range(n):
        x.grad = None
        pixelwise_cross_entropy(x, target, sample_p=0.5, generator=g).backward()
        # each pixel's gradient is either 0 (dropped) or 1/p times its full gradient
        per_pixel = x.grad.abs().sum(1)[0]
        ratio = (x.grad / full)[0, 0]
        kept = per_pixel > 0
        torch.testing.assert_close(ratio[kept], torch.full_like(ratio[kept], 2.0))
        acc += x.grad
    torch.testing.assert_close(acc / n, full, atol=0.2 * float(full.abs().max()), rtol=0)


def test_weights_scale_each_pixels_gradient():
    """With weights w, pixel i's gradient is w[y_i] times its unweighted gradient (fixed normaliser)."""
    logits, target = _data(3)
    w = torch.tensor([0.5, 2.0, 3.0, 0.0], dtype=torch.float64)
    x = logits.clone().requires_grad_(True)
    pixelwise_cross_entropy(x, target).backward()
    g0 = x.grad.clone()
    x.grad = None
    pixelwise_cross_entropy(x, target, w).backward()
    scale = w[target.clamp(max=3)] * (target != 255)
    torch.testing.assert_close(x.grad, g0 * scale[:, None])
    # the loss itself: weighted sum over the number of valid pixels
    terms = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    torch.testing.assert_close(
        pixelwise_cross_entropy(logits, target, w).double(), (terms * scale).sum() / (target != 255).sum()
    )


def test_class_weights_from_data():
    labels = [torch.tensor([[0, 0, 0, 0, 0, 0, 1, 1, 2, 255]]), torch.tensor([[0, 0, 1, 255]])]
    counts = class_frequencies(labels, 4)
    assert counts.tolist() == [8, 3, 1, 0]
    f = counts / counts.sum()
    inv = class_weights(counts, "inverse")
    torch.testing.assert_close(inv[:3].double(), 1 / (3 * f[:3]), rtol=1e-6, atol=0)
    assert float((f * inv.double()).sum()) == pytest.approx(1.0)  # expected pixel weight 1
    assert float(inv[3]) == pytest.approx(float(inv.max()))  # absent class: the largest weight
    med = class_weights(counts, "median")
    torch.testing.assert_close(med[:3].double(), f[1] / f[:3], rtol=1e-6, atol=0)  # median freq is class 1's
    assert float(med[1]) == pytest.approx(1.0)
    # rare classes weigh more: their gradient grows relative to the frequent class's
    assert med[2] > med[1] > med[0]
    with pytest.raises(ValueError):
        class_weights(counts, "bogus")
    with pytest.raises(ValueError):
        class_frequencies([torch.tensor([5])], 4)


def test_dataset_pairs_and_module():
    ds = [(torch.zeros(3, 2, 2), torch.tensor([[0, 1], [1, 1]]))]
    assert class_frequencies(ds, 2).tolist() == [1, 3]
    logits, target = _data(4)
    mod = PixelwiseCrossEntropy(weight=[1.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(mod(logits, target).double(), pixelwise_cross_entropy(logits, target).double())


def test_errors():
    logits, target = _data()
    with pytest.raises(ValueError, match="sample_p"):
        pixelwise_cross_entropy(logits, target, sample_p=0.0)
    target[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        pixelwise_cross_entropy(logits, target)
    with pytest.raises(ValueError, match="do not match"):
        pixelwise_cross_entropy(logits, target[0])
