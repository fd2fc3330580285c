"""FCN*.predict: labels through upsample_argmax, equal to model(images).argmax(1) except at exact ties."""
import pytest
import torch

import fcn_kernels
from fcn_kernels.engine import kaiming_init
from fcn_kernels.models import FCN8s, FCN8sAtOnce, FCN16s, FCN32s

pytestmark = pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(),
                                reason="fcn_kernels._C was not built")

ARCHS = [FCN32s, FCN16s, FCN8s, FCN8sAtOnce]


def random_model(arch, fused, images, n_class=5):
    """A narrow model with every layer random (the reference's zero score layers would tie everywhere), its
    score layers centred on `images` so that no class wins everywhere."""
    model = arch(n_class, fused=fused, width=1 / 32, dropout=0.5).eval()
    kaiming_init(model)
    with torch.no_grad():
        for name in model.score_layer_names():
            getattr(model, name).weight.normal_(0, 1 / model.SKIP_SCALE.get(name[len("score_"):], 1.0))
        for name, scores in zip(model.score_layer_names(), model.scores(images)):
            getattr(model, name).bias.sub_(scores.mean((0, 2, 3)))
        # bilinear upsampling carries a constant through unchanged: centre the output itself
        model.score_fr.bias.sub_(model(images).mean((0, 2, 3)))
    return model


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.__name__)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "stock"])
def test_predict_equals_forward_argmax(seed, arch, fused):
    images = torch.randn(2, 3, 37, 45)
    model = random_model(arch, fused, images).train()
    labels = model.predict(images)
    assert model.training  # restored
    assert labels.shape == (2, 37, 45) and labels.dtype == torch.int64
    model.eval()
    with torch.no_grad():
        scores = model(images)
    want = scores.argmax(1)
    top2 = scores.topk(2, dim=1).values
    tie = (top2[:, 0] - top2[:, 1]) <= 1e-5 * top2[:, 0].abs().clamp_min(1)
    assert ((labels == want) | tie).all()
    assert (labels == want).float().mean() > 0.99
    assert labels.unique().numel() > 1  # the test can tell labels apart


def test_predict_fused_is_the_cpu_upsample_argmax_of_the_same_scores(seed):
    """fused predict never builds the scores, yet gives exactly forward's argmax (same kernels' rounding)."""
    images = torch.randn(1, 3, 50, 33)
    model = random_model(FCN8s, True, images)
    with torch.no_grad():
        assert torch.equal(model.predict(images), model(images).argmax(1))


def test_predict_under_bfloat16_autocast(seed):
    images = torch.randn(1, 3, 29, 31)
    model = random_model(FCN16s, True, images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        labels = model.predict(images)
        with torch.no_grad():
            want = model(images).argmax(1)
    assert torch.equal(labels, want)
