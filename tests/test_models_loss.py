"""FCN*.loss (docs/DESIGN.md §3): pixelwise_cross_entropy(model(images), target, ...) in value and in the
gradient of every parameter, fused (the last stage is upsample_cross_entropy, the full-resolution scores are
never built) and stock; its errors."""

import pytest
import torch

from _helpers.loss_cases import IGNORE, Loss, make_target
from fcn_kernels.losses import pixelwise_cross_entropy
from fcn_kernels.models import FCN8s, FCN16s, FCN32s, fcn as fcn_module

W, N_CLASS, SIZE = 0.0625, 5, (19, 26)  # narrow trunk, odd image sizes
LOSSES = [
    Loss(),
    *(Loss(class_weight=True, ignore=0.2, sample_p=0.5, reduction=r) for r in ("mean", "sum", "none")),
    Loss(ignore=1.0, reduction="mean"),  # every pixel ignored: loss 0, gradient 0
]


@pytest.fixture(autouse=True)
def _fresh_seed(seed):
    """Fresh random weights, images and labels every run (conftest's `seed`; FCN_TEST_SEED replays)."""


def random_model(cls, fused):
    """A float64 model with random score layers, so that every skip and every parameter carries gradient."""
    m = cls(n_class=N_CLASS, width=W, fused=fused, dropout=0.0).double()
    with torch.no_grad():
        for name in m.score_layer_names():
            getattr(m, name).weight.normal_(0, 0.5)
            getattr(m, name).bias.normal_()
    return m


def value_and_grads(model, fn, grad_out):
    value = fn()
    params = [p for p in model.parameters() if p.requires_grad]
    return value.detach(), torch.autograd.grad(value, params, grad_out)


def loss_id(c):
    return f"{c.reduction}-w{int(c.class_weight)}-i{c.ignore}-p{c.sample_p}"


@pytest.mark.parametrize("loss", LOSSES, ids=loss_id)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "stock"])
@pytest.mark.parametrize("cls", [FCN32s, FCN16s, FCN8s])
def test_loss_equals_the_composition(cls, fused, loss, monkeypatch):
    model = random_model(cls, fused)
    images = torch.randn(2, 3, *SIZE, dtype=torch.float64)
    target = make_target(2, N_CLASS, SIZE, loss)
    class_weight = torch.rand(N_CLASS, dtype=torch.float64) * 2 if loss.class_weight else None
    grad_out = torch.randn(target.shape if loss.reduction == "none" else (), dtype=torch.float64)

    def options():  # the same generator state for both
        return dict(
            ignore_index=IGNORE,
            sample_p=loss.sample_p,
            generator=torch.Generator().manual_seed(7),
            reduction=loss.reduction,
        )

    calls, fused_op = [], fcn_module.upsample_cross_entropy

    def counted(*args, **kwargs):
        calls.append("upsample_cross_entropy")
        return fused_op(*args, **kwargs)

    monkeypatch.setattr(fcn_module, "upsample_cross_entropy", counted)
    last = getattr(model, model.upscore_names()[-1])
    hook = last.register_forward_hook(lambda *_: calls.append("full-resolution scores"))
    got, got_grads = value_and_grads(
        model, lambda: model.loss(images, target, class_weight=class_weight, **options()), grad_out
    )
    hook.remove()
    assert calls == ["upsample_cross_entropy" if fused else "full-resolution scores"]

    want, want_grads = value_and_grads(
        model, lambda: pixelwise_cross_entropy(model(images), target, class_weight, **options()), grad_out
    )
    assert got.dtype == torch.float64 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, g, w in zip(names, got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-12, msg=lambda m, name=name: f"grad of {name}: {m}")
    if loss.ignore == 1.0:
        assert got.item() == 0.0 and all(bool((g == 0).all()) for g in got_grads)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "stock"])
def test_bad_targets_are_value_errors(fused):
    model = FCN8s(n_class=N_CLASS, width=W, fused=fused)
    images = torch.randn(1, 3, *SIZE)
    for label in (N_CLASS, -1):
        target = torch.zeros(1, *SIZE, dtype=torch.long)
        target[0, 3, 4] = label
        with pytest.raises(ValueError, match=rf"{label}\b.*outside \[0, {N_CLASS}\)"):
            model.loss(images, target)
    with pytest.raises(ValueError, match=r"images' size .*\(1, 19, 26\).*\(1, 19, 25\)"):
        model.loss(images, torch.zeros(1, SIZE[0], SIZE[1] - 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"N = 1 \(the images' batch\)"):
        model.loss(images, torch.zeros(2, *SIZE, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model.loss(images, torch.zeros(1, *SIZE))
    with pytest.raises(ValueError, match="sample_p"):
        model.loss(images, torch.zeros(1, *SIZE, dtype=torch.long), sample_p=0.0)
