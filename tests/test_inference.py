"""optimize_for_inference: the model's outputs (fp32 rounding; bf16's bound), compiled or not, on each engine
(torch, OpenVINO, ONNX Runtime), at two image sizes; the user's model untouched; predict gives the labels;
the vendor engines from several threads; glibc's malloc keeps freed memory, unless opted out."""

import ctypes
import importlib.util
import os
import platform
import subprocess
import sys

import pytest
import torch

from fcn_kernels.models import FCN8s, inference, matmul_conv, optimize_for_inference

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


def needs(package):
    """Skip unless `package` is installed (the vendor engines: the `test` extra installs both)."""
    return pytest.mark.skipif(importlib.util.find_spec(package) is None, reason=f"{package} is not installed")


# (dtype, compile, engine): the torch engine compiled or not; the vendor engines at each of their precisions
ENGINE_CASES = [
    pytest.param((torch.float32, True, "torch"), id="fp32"),
    pytest.param((torch.float32, False, "torch"), id="fp32-eager"),
    pytest.param((torch.bfloat16, True, "torch"), id="bf16"),
    pytest.param((torch.bfloat16, False, "torch"), id="bf16-eager"),
    pytest.param((torch.float32, False, "openvino"), id="openvino-f32", marks=needs("openvino")),
    pytest.param((torch.bfloat16, False, "openvino"), id="openvino-bf16", marks=needs("openvino")),
    pytest.param((torch.float32, False, "onnxruntime"), id="onnxruntime", marks=needs("onnxruntime")),
]


@pytest.fixture(scope="module", params=ENGINE_CASES)
def optimized(request, model):
    dtype, compile, engine = request.param
    return optimize_for_inference(model, dtype=dtype, compile=compile, engine=engine), dtype


def assert_outputs_equal_the_models(model, fast, dtype, x):
    with torch.no_grad():
        expected = model(x)
    out = fast(x)
    assert out.shape == expected.shape and out.dtype == torch.float32 and not out.requires_grad
    rtol = FP32_RTOL if dtype == torch.float32 else BF16_RTOL
    err = (out - expected).abs().max().item()
    assert err <= rtol * expected.abs().max().item(), f"max error {err:.3g}, scale {expected.abs().max():.3g}"
    if dtype == torch.bfloat16:  # bf16 really ran: its rounding shows
        assert err > 0


@pytest.mark.parametrize("shape", SIZES)
def test_outputs_equal_the_models(model, optimized, shape, seed):
    fast, dtype = optimized
    assert_outputs_equal_the_models(model, fast, dtype, torch.randn(shape))


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_fc6_as_a_product(model, dtype, compile, small_weights_pay, linear_calls, seed):
    """The torch engine's fc6 as im2col + matmul (MatmulConv2d; this model's weights are under its rule's
    least, so the rule is widened to them): the model's outputs still."""
    fast = optimize_for_inference(model, dtype=dtype, compile=compile)
    assert_outputs_equal_the_models(model, fast, dtype, torch.randn(SIZES[0]))
    assert linear_calls  # traced once when compiled, called each time when not


@needs("openvino")
def test_fc6_as_a_product_on_openvino(model, small_weights_pay, seed):
    """The openvino engine at f32 exports fc6 as im2col + matmul for every size where the weights are at least
    the rule's least (widened here to this model's): the model's outputs still, at two sizes. At bf16 fc6
    stays the convolution."""
    fast = optimize_for_inference(model, engine="openvino")
    assert type(fast.model.fc6) is matmul_conv.MatmulConv2d and fast.model.fc6.always
    for shape in SIZES:
        assert_outputs_equal_the_models(model, fast, torch.float32, torch.randn(shape))
    assert type(optimize_for_inference(model, dtype=torch.bfloat16, engine="openvino").model.fc6) is torch.nn.Conv2d


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


@needs("openvino")
def test_vendor_engine_threads_give_the_serial_labels(seed):
    from test_predict import random_model
    from test_serving import predict_in_threads

    inputs = [torch.randn(1 + i % 2, 3, 30 + 7 * (i % 3), 41) for i in range(8)]
    fast = optimize_for_inference(random_model(FCN8s, True, inputs[0]), engine="openvino")
    concurrent = predict_in_threads(fast, inputs)  # the first calls convert the model, once
    serial = [fast.predict(x) for x in inputs]
    assert all(torch.equal(got, want) for got, want in zip(concurrent, serial))
    assert not fast.model.training  # the conversion leaves the model in eval mode
    assert any(s.unique().numel() > 1 for s in serial)


@needs("openvino")
def test_vendor_engine_runs_a_whole_model_that_is_not_an_fcn(seed):
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 5, 1)).eval()
    fast = optimize_for_inference(m, engine="openvino")
    x, y = torch.randn(2, 3, 9, 11), torch.randn(1, 3, 6, 5)
    first = fast(x)
    fast(y)  # the engine's buffers are reused: the first result is the caller's own
    with torch.no_grad():
        assert torch.allclose(first, m(x), rtol=0, atol=FP32_RTOL * m(x).abs().max())
        assert torch.equal(fast.predict(y), fast(y).argmax(1))


@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
@pytest.mark.parametrize("stride", [1, 2, 3, 5])
@pytest.mark.parametrize("dilation", [1, 2])
def test_ceil_is_torch_ceil_for_every_size(kernel, stride, dilation):
    """The rule that lets the openvino engine's pools round "ceil": true exactly where OpenVINO's ceil (the
    output size ceil(L / stride) + 1) equals PyTorch's ceil_mode size at every input size."""
    for pad in range(0, kernel // 2 + 1):
        same = True
        for size in range(dilation * (kernel - 1) + 1 - 2 * pad if pad else dilation * (kernel - 1) + 1, 40):
            if size < 1:
                continue
            x = torch.zeros(1, 1, size)
            torch_size = torch.nn.functional.max_pool1d(x, kernel, stride, pad, dilation, ceil_mode=True).shape[-1]
            span = size + 2 * pad - dilation * (kernel - 1) - 1
            same &= torch_size == -(-span // stride) + 1
        assert inference.ceil_is_torch_ceil(kernel, stride, dilation, pad, pad) == same, (pad, same)


@needs("openvino")
def test_openvino_pools_round_ceil_only_where_it_is_torchs(seed):
    """FCN's 2x2 stride-2 pools reach OpenVINO as "ceil" pools (no indices computed: faster); a pool where
    ceil differs (2 wide, stride 3) stays "ceil_torch", and both engines' outputs are torch's at sizes where
    the rounding decides the output's size (7 and 10 here: the last window would start past the input)."""
    ov = pytest.importorskip("openvino")
    from fcn_kernels.export import _in_eval_mode

    def roundings(m, x):
        program = _in_eval_mode(m, (x,), True, lambda m, xs, s: torch.export.export(m, xs, dynamic_shapes=s))
        converted = inference._plain_ceil_pools(ov.convert_model(program))
        return {
            op.get_attributes()["rounding_type"]
            for op in converted.get_ordered_ops()
            if op.get_type_name() == "MaxPool"
        }

    assert roundings(inference._Scores(small_fcn8s().eval()), torch.randn(1, 3, 32, 32)) == {"ceil"}
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.MaxPool2d(2, 3, ceil_mode=True)).eval()
    assert roundings(m, torch.randn(1, 3, 9, 9)) == {"ceil_torch"}
    fast = optimize_for_inference(m, engine="openvino")
    for size in (9, 12):  # conv output 7 and 10: ceil would give one more window than torch
        x = torch.randn(1, 3, size, size + 3)
        with torch.no_grad():
            expected = m(x)
        out = fast(x)
        assert out.shape == expected.shape
        assert torch.allclose(out, expected, rtol=0, atol=FP32_RTOL * expected.abs().max())


def test_engine_errors(monkeypatch):
    with pytest.raises(ValueError, match="engine must be one of 'torch', 'openvino', 'onnxruntime', got 'tvm'"):
        optimize_for_inference(small_fcn8s(), engine="tvm")
    with pytest.raises(ValueError, match="engine='onnxruntime' runs float32 only"):
        optimize_for_inference(small_fcn8s(), dtype=torch.bfloat16, engine="onnxruntime")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(ImportError, match="engine='openvino' needs the openvino package.*pip install openvino"):
        optimize_for_inference(small_fcn8s(), engine="openvino")


# Where glibc put a 64 MiB tensor: mmapped (hblkhd grew: glibc's default), or in the heap (uordblks, the heap's
# bytes in use, grew: the thresholds were raised).
_PROBE = """
import ctypes, sys, torch
{setup}
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks".split()]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
before = mallinfo2()
x = torch.empty(1 << 24)
after = mallinfo2()
print(after.hblkhd - before.hblkhd >= 1 << 26, after.uordblks - before.uordblks >= 1 << 26)
"""
OPTIMIZE = "from fcn_kernels.models import FCN8s, optimize_for_inference as o; o(FCN8s(width=1/64), compile=False{})"
CLI = "from fcn_kernels.app.cli import main; main(['doctor', '--help'])"


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="glibc's malloc only (elsewhere keep_memory does nothing); mallinfo2 is glibc >= 2.33's",
)
@pytest.mark.parametrize(
    "setup,opt_out,kept",
    [
        ("", "1", False),  # glibc's default
        (OPTIMIZE.format(""), "1", True),
        (OPTIMIZE.format(""), "0", False),
        (OPTIMIZE.format(", keep_memory=False"), "1", False),
        (CLI, "1", True),
        (CLI, "0", False),
    ],
    ids=["default", "optimize_for_inference", "env-opt-out", "arg-opt-out", "cli", "cli-opt-out"],
)
def test_keep_memory(setup, opt_out, kept):
    """optimize_for_inference and the command line make glibc keep freed memory (big blocks from the heap,
    not mmapped afresh), unless FCN_KERNELS_KEEP_MEMORY=0 or keep_memory=False. In a fresh process: the
    setting is the process's."""
    code = _PROBE.format(setup=f"try:\n    {setup}\nexcept SystemExit:\n    pass" if setup else "")
    env = dict(os.environ, FCN_KERNELS_KEEP_MEMORY=opt_out)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ([str(not kept), str(kept)]), out.stdout


@pytest.mark.slow  # ten compilations of a one-layer model: about a minute on 2 loaded cores
def test_each_model_compiles_its_own_graphs(seed):
    """Dynamo's graphs, and its recompile limit (8), are per code object: InferenceModels of one class
    shared one cache, and the ninth graph in a process ran eagerly. Now each model has its own: five
    models at two sizes compile ten graphs."""
    from torch._dynamo.utils import counters

    before = counters["stats"]["unique_graphs"]
    for _ in range(5):
        fast = optimize_for_inference(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1)).eval())
        for size in (8, 12):
            fast(torch.randn(1, 3, size, size))
    assert counters["stats"]["unique_graphs"] - before == 10
