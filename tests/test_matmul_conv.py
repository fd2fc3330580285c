"""MatmulConv2d (fc6 as im2col + matmul in optimize_for_inference's torch engine): the convolution's outputs
and gradients in float64 on both of its paths, its rule, what it accepts, and where optimize_for_inference
puts it."""

import importlib.util

import pytest
import torch
from torch import nn

from fcn_kernels.models import FCN8s, optimize_for_inference
from fcn_kernels.models.matmul_conv import MATMUL_RULE, MatmulConv2d, matmul_pays


@pytest.fixture
def float64_pays(monkeypatch):
    monkeypatch.setitem(MATMUL_RULE, torch.float64, (1, 10**6, 0))


# (batch, in, out, kernel, height, width, bias, layout): odd sizes, a window as big as the input, 1x1,
# batch 0, channels_last and non-contiguous inputs
CASES = [
    (2, 6, 5, (3, 4), 7, 9, True, "contiguous"),
    (1, 3, 4, (7, 7), 7, 7, True, "contiguous"),
    (3, 5, 2, (1, 1), 4, 3, False, "contiguous"),
    (2, 4, 3, (2, 5), 6, 8, True, "channels_last"),
    (2, 4, 3, (3, 3), 6, 8, True, "non-contiguous"),
    (0, 4, 3, (3, 3), 6, 8, True, "contiguous"),
]


def _input(n, c, h, w, layout):
    if layout == "non-contiguous":
        return torch.randn(n, c, h, 2 * w, dtype=torch.float64)[..., ::2]
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


@pytest.mark.parametrize("pays", [True, False], ids=["matmul", "conv"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}-k{c[3][0]}x{c[3][1]}-{c[4]}x{c[5]}-{c[7]}")
def test_equals_the_convolution_float64(case, pays, monkeypatch, linear_calls, seed):
    n, c_in, c_out, k, h, w, bias, layout = case
    monkeypatch.setitem(MATMUL_RULE, torch.float64, (1, 10**6, 0) if pays else (1, 0, 0))
    conv = nn.Conv2d(c_in, c_out, k, bias=bias).double()
    m = MatmulConv2d.from_conv(conv)
    x = _input(n, c_in, h, w, layout).requires_grad_()
    y, expected = m(x), conv(x)
    assert y.shape == expected.shape and y.dtype == torch.float64
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    assert len(linear_calls) == (pays and n > 0)
    if n == 0:
        return
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, conv.weight) + ((conv.bias,) if bias else ()), g)
    expected_grads = torch.autograd.grad(expected, (x, conv.weight) + ((conv.bias,) if bias else ()), g)
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradcheck(float64_pays, linear_calls, seed):
    m = MatmulConv2d.from_conv(nn.Conv2d(2, 3, (2, 3)).double())
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))
    assert linear_calls


def test_float32_and_bf16_autocast(small_weights_pay, linear_calls, seed):
    conv = nn.Conv2d(16, 8, 7)
    m = MatmulConv2d.from_conv(conv)
    x = torch.randn(1, 16, 10, 11)
    with torch.no_grad():
        torch.testing.assert_close(m(x), conv(x), rtol=1e-5, atol=1e-5)
        assert len(linear_calls) == 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, expected = m(x), conv(x)
    assert len(linear_calls) == 2 and y.dtype == expected.dtype == torch.bfloat16
    # both round inputs and weights to bf16 and sum 784 products in float32: they differ by their outputs'
    # rounding to bf16 (2^-8 relative) at most
    err = (y.float() - expected.float()).abs().max().item()
    assert err <= 2.0**-7 * expected.float().abs().max().item()


def test_the_rule():
    fc6 = 4096 * 512 * 7 * 7  # width 1
    assert matmul_pays(torch.float32, fc6, 1, 1) and matmul_pays(torch.float32, fc6, 1024, 32)
    assert not matmul_pays(torch.float32, fc6, 1025, 5) and not matmul_pays(torch.float32, fc6, 0, 9)
    assert matmul_pays(torch.float32, fc6 // 16, 81, 9) and not matmul_pays(torch.float32, fc6 // 256, 81, 9)
    assert matmul_pays(torch.bfloat16, fc6, 81, 9) and matmul_pays(torch.bfloat16, fc6, 400, 20)
    assert not matmul_pays(torch.bfloat16, fc6, 401, 1) and not matmul_pays(torch.bfloat16, fc6 // 4, 81, 9)
    assert not matmul_pays(torch.bfloat16, fc6, 256, 16) and not matmul_pays(torch.bfloat16, fc6, 32, 32)
    assert not matmul_pays(torch.float64, fc6, 1, 1) and not matmul_pays(torch.float16, fc6, 1, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_over_the_rule_run_the_convolution(dtype, small_weights_pay, linear_calls, seed):
    most = MATMUL_RULE[dtype][1]  # a multiple of 8
    conv = nn.Conv2d(2, 3, (1, 3))
    m = MatmulConv2d.from_conv(conv)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        m(torch.randn(1, 2, most // 8, 8 + 2))  # most rows, 8 wide
        assert len(linear_calls) == 1
        y = m(torch.randn(1, 2, most // 8 + 1, 8 + 2))
    assert len(linear_calls) == 1 and y.shape == (1, 3, most // 8 + 1, 8)


def test_bf16_outputs_16_wide_run_the_convolution(small_weights_pay, linear_calls, seed):
    m = MatmulConv2d.from_conv(nn.Conv2d(2, 3, 3))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        m(torch.randn(1, 2, 3, 18))
        assert not linear_calls
        m(torch.randn(1, 2, 3, 17))
    assert len(linear_calls) == 1


def test_small_weights_run_the_convolution(linear_calls, seed):
    m = MatmulConv2d.from_conv(nn.Conv2d(4, 6, 7))
    with torch.no_grad():
        m(torch.randn(1, 4, 9, 9))
    assert not linear_calls


def test_shares_the_parameters_and_state_dict():
    conv = nn.Conv2d(4, 6, 7).eval()
    m = MatmulConv2d.from_conv(conv)
    assert m.weight is conv.weight and m.bias is conv.bias and not m.training
    assert m.state_dict().keys() == conv.state_dict().keys()
    assert MatmulConv2d.from_conv(nn.Conv2d(4, 6, 7, bias=False)).bias is None


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, stride=2),
        nn.Conv2d(4, 4, 3, dilation=2),
        nn.Conv2d(4, 4, 3, groups=2),
        nn.ConvTranspose2d(4, 4, 3),
    ],
    ids=["padding", "stride", "dilation", "groups", "transposed"],
)
def test_other_convolutions_are_refused(conv):
    assert not MatmulConv2d.fits(conv)
    with pytest.raises(ValueError, match="conv must be an nn.Conv2d of one group, stride 1, no padding"):
        MatmulConv2d.from_conv(conv)


def test_bad_inputs_get_the_convolutions_errors(float64_pays):
    m = MatmulConv2d.from_conv(nn.Conv2d(2, 3, 7).double())
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        m(torch.randn(1, 2, 6, 9, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"expected input\[1, 5, 9, 9\] to have 2 channels, but got 5"):
        MatmulConv2d.from_conv(nn.Conv2d(2, 3, 7).double(), always=True)(torch.randn(1, 5, 9, 9, dtype=torch.float64))


def test_optimize_for_inference_puts_it_on_fc6_of_the_torch_engine_only():
    model = FCN8s(n_class=3, width=1 / 64).eval()
    fast = optimize_for_inference(model, compile=False)
    assert type(fast.model.fc6) is MatmulConv2d and type(model.fc6) is nn.Conv2d
    assert fast.state_dict().keys() == {f"model.{k}" for k in model.state_dict()}
    assert fast.model.fc6.weight.is_contiguous(memory_format=torch.channels_last)
    if importlib.util.find_spec("openvino") is not None:  # weights under the rule's least: as it is
        assert type(optimize_for_inference(model, engine="openvino").model.fc6) is nn.Conv2d
    if importlib.util.find_spec("onnxruntime") is not None:  # unmeasured: as it is
        assert type(optimize_for_inference(model, engine="onnxruntime").model.fc6) is nn.Conv2d


def test_always_runs_the_product(linear_calls, seed):
    conv = nn.Conv2d(3, 4, 2).double()
    m = MatmulConv2d.from_conv(conv, always=True)
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x), conv(x), rtol=1e-12, atol=1e-12)
    assert len(linear_calls) == 1 and "always=True" in repr(m)
