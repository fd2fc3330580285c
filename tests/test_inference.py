"""optimize_for_inference: the model's outputs (fp32 rounding; bf16's bound), compiled or not, at two image
sizes; the user's model untouched; predict gives the labels."""

import pytest
import torch

from fcn_kernels.models import FCN8s, optimize_for_inference

SIZES = ((1, 3, 45, 38), (2, 3, 32, 52))
# fp32: convolutions summed in another order (channels_last, oneDNN's blocked kernels, Inductor's
# fusions) differ by a few ulps of the largest partial sums; 1e-4 of the output's scale bounds that
# with a wide margin at these sizes (the errors seen are about 1e-6).
FP32_RTOL = 1e-4
# bf16: each of the trunk's 16 layers rounds its input and weights to bf16 (2^-9 relative, twice);
# compounded through the layers that is at most 16 * 2^-8 of the output's scale.
BF16_RTOL = 16 * 2.0**-8


def small_fcn8s():
    m = FCN8s(n_class=5, width=1 / 16)
    with torch.no_grad():  # random score layers, so both skips reach the output
        for name in m.score_layer_names():
            getattr(m, name).weight.normal_(0, 0.1)
            getattr(m, name).bias.normal_(0, 0.1)
    return m


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return small_fcn8s().eval()


@pytest.fixture(
    scope="module",
    params=[(torch.float32, True), (torch.float32, False), (torch.bfloat16, True), (torch.bfloat16, False)],
    ids=["fp32", "fp32-eager", "bf16", "bf16-eager"],
)
def optimized(request, model):
    dtype, compile = request.param
    return optimize_for_inference(model, dtype=dtype, compile=compile), dtype


@pytest.mark.parametrize("shape", SIZES)
def test_outputs_equal_the_models(model, optimized, shape, seed):
    fast, dtype = optimized
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
    out = fast(x)
    assert out.shape == expected.shape and out.dtype == torch.float32 and not out.requires_grad
    rtol = FP32_RTOL if dtype == torch.float32 else BF16_RTOL
    err = (out - expected).abs().max().item()
    assert err <= rtol * expected.abs().max().item(), f"max error {err:.3g}, scale {expected.abs().max():.3g}"
    if dtype == torch.bfloat16:  # bf16 really ran: its rounding shows
        assert err > 0


@pytest.mark.parametrize("shape", SIZES[:1])
def test_predict_gives_the_labels(model, optimized, shape, seed):
    fast, dtype = optimized
    x = torch.randn(shape)
    with torch.no_grad():
        scores = model(x)
    labels = fast.predict(x)
    assert labels.dtype == torch.int64 and labels.shape == (shape[0],) + shape[2:]
    # Labels may differ only where the two best classes are within the dtype's rounding of each other.
    rtol = FP32_RTOL if dtype == torch.float32 else BF16_RTOL
    top2 = scores.topk(2, dim=1).values
    near_tie = (top2[:, 0] - top2[:, 1]) <= 2 * rtol * scores.abs().max()
    assert ((labels == scores.argmax(1)) | near_tie).all()
    assert (labels == scores.argmax(1)).float().mean() > 0.5


def test_users_model_untouched(seed):
    m = small_fcn8s().train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fast = optimize_for_inference(m, compile=False)
    assert m.training and not fast.model.training
    assert all(p.requires_grad == (not name.startswith("upscore")) for name, p in m.named_parameters())
    assert not any(p.requires_grad for p in fast.model.parameters())
    assert m.conv1_1.weight.is_contiguous() and fast.model.conv1_1.weight.is_contiguous(
        memory_format=torch.channels_last
    )
    fast(torch.randn(1, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    # state_dict holds the model's parameters once
    assert set(fast.state_dict()) == {f"model.{k}" for k in before}


def test_eval_mode_means_no_dropout(seed):
    m = small_fcn8s().train()
    fast = optimize_for_inference(m, compile=False)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(fast(x), fast(x))


def test_bad_dtype():
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.bfloat16, got torch.float16"):
        optimize_for_inference(small_fcn8s(), dtype=torch.float16)
