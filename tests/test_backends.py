"""Backend selection (docs/DESIGN.md §4): automatic choice, FCN_KERNELS_BACKEND, clear errors."""

import importlib

import pytest
import torch
import torch.nn.functional as F

import fcn_kernels
from fcn_kernels import backends

op_module = importlib.import_module("fcn_kernels.ops.upsample_skip")  # the module, not the function


def _inputs():
    return torch.randn(1, 2, 3, 3), fcn_kernels.bilinear_kernel(2, 4, groups=2)


def test_available_backends():
    avail = fcn_kernels.available_backends()
    assert avail[0] == "reference" and set(avail) <= set(backends.BACKENDS)
    assert ("cuda" in avail) == (torch.cuda.is_available() and backends._built("cuda", "upsample_skip"))


@pytest.fixture
def spy_reference(monkeypatch):
    calls = []
    real = op_module.reference.upsample_skip

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(op_module.reference, "upsample_skip", spy)
    return calls


@pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="_C not built")
def test_cpu_tensors_default_to_cpu_kernels(spy_reference, monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert backends.resolve(None, torch.device("cpu"), "upsample_skip", cin_g=1, cout_g=1) == "cpu"
    x, w = _inputs()
    fcn_kernels.upsample_skip(x, w, stride=2, groups=2)
    assert spy_reference == []


def test_env_var_sets_default(spy_reference, monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    x, w = _inputs()
    fcn_kernels.upsample_skip(x, w, stride=2, groups=2)
    assert spy_reference == [1]
    monkeypatch.setenv(backends.ENV_VAR, "bogus")
    with pytest.raises(ValueError, match="FCN_KERNELS_BACKEND='bogus' is not one of"):
        fcn_kernels.upsample_skip(x, w, stride=2, groups=2)


def test_explicit_backend_overrides_env(spy_reference, monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "cpu")
    x, w = _inputs()
    fcn_kernels.upsample_skip(x, w, stride=2, groups=2, backend="reference")
    assert spy_reference == [1]


def test_unavailable_backend_is_an_error_not_a_fallback():
    x, w = _inputs()
    with pytest.raises(ValueError, match="backend='gpu' is not one of"):
        fcn_kernels.upsample_skip(x, w, stride=2, groups=2, backend="gpu")
    with pytest.raises(RuntimeError, match="backend='cuda'"):
        fcn_kernels.upsample_skip(x, w, stride=2, groups=2, backend="cuda")
    if not backends.triton_interpret():
        with pytest.raises(RuntimeError, match="backend='triton'"):
            fcn_kernels.upsample_skip(x, w, stride=2, groups=2, backend="triton")


# ---------------------------------------------------------------------------------------------------------
# The automatic choice per shape ("never slower than the vendor library"): the rule of fcn_kernels/backends.py
# ---------------------------------------------------------------------------------------------------------
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("device", [CPU, CUDA])
@pytest.mark.parametrize(
    "cin_g,cout_g,stock",
    [(512, 512, True), (8, 8, True), (8, 7, False), (7, 64, False), (1, 1, False), (1, 2, False), (4, 4, False)],
)
def test_rule_rarefied_conv2d(device, cin_g, cout_g, stock):
    chosen = backends.choose("rarefied_conv2d", device, cin_g=cin_g, cout_g=cout_g)
    assert (chosen == "reference") == stock or not backends._built("cpu", "rarefied_conv2d"), chosen


# depthwise rarefied_conv2d on CPU: (channels, out_size, rarefaction, grad) -> stock?
DEPTHWISE_RULE = [
    (64, 64, 2, False, True),  # inference on a large map: oneDNN's depthwise forward
    (32, 64, 4, False, True),  # exactly 2**17 output elements
    (31, 64, 4, False, False),  # just under
    (64, 64, 2, True, False),  # training: our forward + backward (2x to 2.8x faster)
    (64, 64, 8, False, False),  # rarefaction 8: ours (oneDNN 2x slower there)
    (21, 64, 2, False, False),  # FCN-sized score maps: ours
]


@pytest.mark.parametrize("channels,hw,r,grad,stock", DEPTHWISE_RULE)
def test_rule_depthwise_rarefied_conv2d_on_cpu(channels, hw, r, grad, stock):
    shape = dict(cin_g=1, cout_g=1, stride=(r, r), channels=channels, out_size=(hw, hw), grad=grad)
    chosen = backends.choose("rarefied_conv2d", CPU, **shape)
    assert (chosen == "reference") == stock or not backends._built("cpu", "rarefied_conv2d"), chosen
    assert backends.choose("rarefied_conv2d", CUDA, **shape) != "reference"  # a CPU rule only


@pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="_C not built")
def test_depthwise_inference_runs_stock_and_training_ours(monkeypatch):
    calls = []
    monkeypatch.setattr(
        fcn_kernels.reference,
        "rarefied_conv2d",
        lambda *a, _f=fcn_kernels.reference.rarefied_conv2d, **k: calls.append("stock") or _f(*a, **k),
    )
    x, w = torch.randn(1, 64, 66, 66), torch.randn(64, 1, 3, 3)
    with torch.no_grad():
        y = fcn_kernels.rarefied_conv2d(x, w, rarefaction=2, padding=1, groups=64)
    assert calls == ["stock"]
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1, dilation=2, groups=64))
    x.requires_grad_()
    y = fcn_kernels.rarefied_conv2d(x, w, rarefaction=2, padding=1, groups=64)
    assert calls == ["stock"] and y.grad_fn is not None  # with a gradient to come: our kernels


# (device, cin_g, cout_g, kernel, stride, out_size, weight_grad) -> stock?
UPSAMPLE_RULE = [
    (CPU, 1, 1, 16, 8, 500, True, False),  # depthwise: always ours
    (CPU, 1, 1, 3, 1, 64, False, False),
    (CPU, 3, 8, 4, 2, 34, True, False),  # narrow groups: ours
    (CPU, 21, 21, 16, 8, 500, False, False),  # FCN-8s upscore8, fixed dense 21 x 21: ours
    (CPU, 21, 21, 4, 2, 70, False, True),  # FCN-8s upscore_pool4 dense, a small map: stock
    (CPU, 21, 21, 4, 2, 34, False, True),  # FCN-8s upscore2 dense
    (CPU, 21, 21, 16, 8, 500, True, True),  # a trained dense weight: stock
    (CPU, 4, 4, 4, 2, 500, True, True),
    (CPU, 8, 8, 3, 1, 500, False, True),  # stride 1
    (CPU, 8, 8, 4, 2, 64, False, False),  # 8 * 4 = 32 products per output: ours
    (CPU, 9, 9, 4, 2, 64, False, True),
    (CPU, 64, 64, 4, 2, 254, False, False),  # a large map: ours
    (CUDA, 21, 21, 16, 8, 500, False, True),  # CUDA: dense heads to cuDNN (measured 2x to 4.5x faster)
    (CUDA, 21, 21, 4, 2, 34, False, True),
    (CUDA, 4, 4, 4, 2, 500, False, True),
    (CUDA, 3, 8, 4, 2, 500, False, False),  # narrow groups and depthwise: ours
    (CUDA, 1, 1, 16, 8, 500, False, False),  # FCN's depthwise upscore8 (3.6x to 18.7x faster forward)
    (CUDA, 33, 33, 4, 2, 500, False, True),
    (CUDA, 21, 21, 4, 2, 500, True, True),
    (CUDA, 8, 8, 3, 1, 500, False, True),
    (CUDA, 1, 1, 3, 1, 500, True, False),
]


def _chooses_stock(op, device, cin_g, cout_g, k, s, out, **facts):
    """Whether the automatic choice for `op` on this square shape is the stock composition."""
    why = backends.explain(
        op, device, cin_g=cin_g, cout_g=cout_g, kernel=(k, k), stride=(s, s), out_size=(out, out), **facts
    )
    if device.type == "cpu" and not backends._built("cpu", op):
        pytest.skip("_C not built")
    return why.startswith("reference: "), why


@pytest.mark.parametrize("device,cin_g,cout_g,k,s,out,weight_grad,stock", UPSAMPLE_RULE)
def test_rule_upsample_skip(device, cin_g, cout_g, k, s, out, weight_grad, stock):
    chose_stock, why = _chooses_stock("upsample_skip", device, cin_g, cout_g, k, s, out, weight_grad=weight_grad)
    assert chose_stock == stock, why


# upsample_argmax: (device, cin_g, cout_g, k, s, out) -> stock? Products per output pixel: Cout * cin_g * taps
# (groups=1 here, so Cout = cout_g).
ARGMAX_RULE = [
    (CPU, 1, 1, 16, 8, 500, False),  # FCN's depthwise upscore8: always ours
    (CPU, 3, 150, 4, 2, 34, False),  # narrow groups: ours
    (CPU, 21, 21, 4, 2, 34, False),  # 1,764 products: ours on any plane (measured 1.2x to 4.0x faster)
    (CPU, 21, 21, 16, 8, 500, False),
    (CPU, 22, 23, 4, 2, 127, False),  # 2,024: ours
    (CPU, 23, 23, 4, 2, 127, True),  # 2,116 on a plane under 128 x 128: stock
    (CPU, 23, 23, 4, 2, 128, False),  # the same on 128 x 128: ours
    (CPU, 32, 32, 16, 8, 72, True),  # measured stock/ours 0.73 to 1.15 (1 and 2 threads, fp32 and bf16)
    (CPU, 64, 64, 4, 2, 500, False),  # 16,384 products: ours on a large plane
    (CPU, 64, 65, 4, 2, 500, True),  # past 16,384: stock on any plane
    (CPU, 150, 150, 16, 8, 328, True),
    (CUDA, 21, 21, 16, 8, 500, True),  # dense on CUDA: cuDNN, then argmax
    (CUDA, 1, 1, 16, 8, 500, False),
]


@pytest.mark.parametrize("device,cin_g,cout_g,k,s,out,stock", ARGMAX_RULE)
def test_rule_upsample_argmax(device, cin_g, cout_g, k, s, out, stock):
    chose_stock, why = _chooses_stock("upsample_argmax", device, cin_g, cout_g, k, s, out, channels=cout_g)
    assert chose_stock == stock, why


@pytest.fixture
def spies(monkeypatch):
    """Calls of the stock compositions (fcn_kernels.reference, which the ops call for "reference"), in order."""
    calls = []
    for name in ("upsample_skip", "upsample_argmax", "rarefied_conv2d"):
        real = getattr(fcn_kernels.reference, name)
        monkeypatch.setattr(
            fcn_kernels.reference,
            name,
            lambda *a, _real=real, _name=name, **k: (calls.append(f"stock {_name}"), _real(*a, **k))[1],
        )
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    return calls


def _dense_rarefied():
    return torch.randn(1, 16, 9, 9), torch.randn(16, 16, 3, 3)


@pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="_C not built")
def test_auto_runs_the_chosen_path(spies, seed):
    x, w = _dense_rarefied()
    y = fcn_kernels.rarefied_conv2d(x, w, rarefaction=2, padding=2)
    assert spies == ["stock rarefied_conv2d"]
    xd, wd = torch.randn(1, 16, 9, 9), torch.randn(16, 1, 3, 3)
    fcn_kernels.rarefied_conv2d(xd, wd, rarefaction=2, padding=2, groups=16)  # depthwise: our kernels
    assert spies == ["stock rarefied_conv2d"]
    # upsample_skip: the same dense layer, fixed or trained weight
    xu = torch.randn(1, 8, 5, 5)
    wu = torch.randn(8, 8, 4, 4)
    fcn_kernels.upsample_skip(xu, wu, stride=2)
    assert spies == ["stock rarefied_conv2d"]  # 8 * 4 products per output: ours
    fcn_kernels.upsample_skip(xu, wu.requires_grad_(), stride=2)
    assert spies == ["stock rarefied_conv2d", "stock upsample_skip"]
    with torch.no_grad():  # no weight gradient will be taken
        fcn_kernels.upsample_skip(xu, wu, stride=2)
    assert len(spies) == 2
    torch.testing.assert_close(y, F.conv2d(x, w, padding=2, dilation=2))


@pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="_C not built")
def test_auto_upsample_argmax_runs_the_chosen_path(spies):
    # the op reads its shape: channels per group, groups, filter, stride and plane (the rule's inputs)
    def stock_calls():
        return spies.count("stock upsample_argmax")  # (which calls the stock upsample_skip in turn)

    x, w = torch.randn(1, 24, 5, 5), torch.randn(24, 24, 4, 4)  # 2,304 products a pixel, a 12 x 12 plane
    labels = fcn_kernels.upsample_argmax(x, w, stride=2)
    assert stock_calls() == 1
    torch.testing.assert_close(labels, F.conv_transpose2d(x, w, stride=2).argmax(1), rtol=0, atol=0)
    fcn_kernels.upsample_argmax(x[:, :21], w[:21, :21], stride=2)  # 1,764: ours
    fcn_kernels.upsample_argmax(torch.randn(1, 24, 5, 5), torch.randn(24, 2, 4, 4), stride=2, groups=12)  # narrow
    fcn_kernels.upsample_argmax(x, w, stride=2, backend="cpu")  # forced: ours whatever the shape
    assert stock_calls() == 1


@pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="_C not built")
@pytest.mark.parametrize("how", ["argument", "env"])
def test_forced_backend_runs_the_kernels_on_dense_shapes(spies, monkeypatch, how):
    x, w = _dense_rarefied()
    kw = dict(backend="cpu") if how == "argument" else {}
    if how == "env":
        monkeypatch.setenv(backends.ENV_VAR, "cpu")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        y = fcn_kernels.rarefied_conv2d(x, w, rarefaction=2, padding=2, **kw)
        fcn_kernels.upsample_skip(torch.randn(1, 8, 5, 5), torch.randn(8, 8, 4, 4, requires_grad=True), stride=2, **kw)
    names = {e.name for e in prof.events()}
    assert spies == [] and {"fcn_kernels::rarefied_conv2d", "fcn_kernels::upsample_skip"} <= names
    torch.testing.assert_close(y, F.conv2d(x, w, padding=2, dilation=2))
    monkeypatch.setenv(backends.ENV_VAR, "reference")  # and the env var forces the stock path too
    fcn_kernels.rarefied_conv2d(torch.randn(1, 4, 9, 9), torch.randn(4, 1, 3, 3), padding=1, groups=4)
    assert spies == ["stock rarefied_conv2d"]


@pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="_C not built")
def test_auto_choice_compiles_fullgraph(spies):
    x, w = _dense_rarefied()
    torch._dynamo.reset()
    f = torch.compile(
        lambda x, w: fcn_kernels.rarefied_conv2d(x, w, rarefaction=2, padding=2), fullgraph=True, backend="eager"
    )
    torch.testing.assert_close(f(x, w), F.conv2d(x, w, padding=2, dilation=2))
    xu, wu = torch.randn(1, 8, 5, 5, requires_grad=True), torch.randn(8, 8, 4, 4, requires_grad=True)
    g = torch.compile(
        lambda x, w: fcn_kernels.upsample_skip(x, w, stride=2, out_offset=1), fullgraph=True, backend="eager"
    )
    torch.testing.assert_close(g(xu, wu), F.conv_transpose2d(xu, wu, stride=2)[:, :, 1:, 1:])


# ---------------------------------------------------------------------------------------------------------
# One autograd per op family (fcn_kernels/_autograd/): the same names and the same saved tensors on
# every backend
# ---------------------------------------------------------------------------------------------------------
def _runnable(backend):
    return backend in fcn_kernels.available_backends() and backends._runs_on(backend, torch.device("cpu"))


@pytest.mark.skipif(
    not backends._triton_importable() or "cpu" not in fcn_kernels.available_backends(),
    reason="needs triton and the C++ ops",
)
def test_op_names_follow_the_rule():
    import fcn_kernels.triton  # noqa: F401  (registers the Triton ops)

    names = {n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("fcn_kernels::")}
    triton_ops = {n for n in names if n.endswith("_triton")}
    cpp_ops = names - triton_ops
    family = {
        f"{op}{p}" for op in ("upsample_skip", "rarefied_conv2d") for p in ("", "_backward_input", "_backward_weight")
    }
    assert family <= cpp_ops
    assert {f"{n}_triton" for n in family} | {"backward_bias_skip_triton"} <= triton_ops
    for name in triton_ops - {"backward_bias_skip_triton"}:
        assert name[: -len("_triton")] in cpp_ops, name


def _saved_shapes(fn):
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: (shapes.append(tuple(t.shape)), t)[1], lambda t: t):
        fn()
    return shapes


@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize("op", ["upsample_skip", "rarefied_conv2d"])
def test_same_saved_tensors_on_every_backend(backend, op):
    if not _runnable(backend):
        pytest.skip(f"{backend} does not run on CPU tensors here")
    x, skip = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 8, 8)
    w = torch.randn(2, 1, 4, 4) if op == "upsample_skip" else torch.randn(2, 1, 3, 3)
    call = (
        (lambda x, w: fcn_kernels.upsample_skip(x, w, None, skip.requires_grad_(), stride=2, groups=2, backend=backend))
        if op == "upsample_skip"
        else (lambda x, w: fcn_kernels.rarefied_conv2d(x, w, padding=1, groups=2, backend=backend))
    )
    # x only for the weight gradient, the weight only for x's, nothing for bias or skip
    assert _saved_shapes(lambda: call(x.requires_grad_(), w)) == [tuple(w.shape)]
    assert _saved_shapes(lambda: call(x.detach(), w.requires_grad_())) == [tuple(x.shape)]
    assert sorted(_saved_shapes(lambda: call(x.requires_grad_(), w.requires_grad_()))) == sorted([x.shape, w.shape])


# ---------------------------------------------------------------------------------------------------------
# The build check: a compiled backend is available only when every op has every kernel it needs
# ---------------------------------------------------------------------------------------------------------
ALL_KERNELS = [
    "upsample_skip",
    "upsample_skip_backward_input",
    "upsample_skip_backward_weight",
    "upsample_argmax",
    "rarefied_conv2d",
    "rarefied_conv2d_backward_input",
    "rarefied_conv2d_backward_weight",
    "upsample_logsumexp",
    "upsample_logsumexp_backward",
    "interpolate_logsumexp",
    "interpolate_logsumexp_backward",
    "interpolate_argmax",
]


def _pretend_built(monkeypatch, lacking=(), gpu=True):
    """backends as if the extension had every CPU and CUDA kernel except `lacking` (CUDA), on a machine
    with a GPU; returns the (kernel, dispatch key) pairs looked up."""
    asked = []

    def has_kernel(op, key):
        asked.append((op, key))
        return not (key == "CUDA" and op in lacking)

    monkeypatch.setattr(backends._ext, "has_kernel", has_kernel)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(backends, "_BUILT", backends._built_table())
    return asked


def test_build_check_asks_for_every_kernel(monkeypatch):
    asked = _pretend_built(monkeypatch)
    assert sorted(op for op, key in asked if key == "CUDA") == sorted(ALL_KERNELS)
    assert sorted(op for op, key in asked if key == "CPU") == sorted(ALL_KERNELS)
    assert "cuda" in backends.available_backends() and backends._missing_kernels("cuda") == []


@pytest.mark.parametrize("lacking", ALL_KERNELS)
def test_one_missing_kernel_fails_the_build_check(monkeypatch, lacking):
    _pretend_built(monkeypatch, lacking=[lacking])
    assert "cuda" not in backends.available_backends() and "cpu" in backends.available_backends()
    assert backends._missing_kernels("cuda") == [lacking]
    owner = next(op for op, kernels in backends._KERNELS.items() if lacking in kernels)
    assert not backends._built("cuda", owner)
    assert all(backends._built("cuda", op) for op in backends._OPS if op != owner)
    with pytest.raises(RuntimeError, match=f"without cuda kernels for {owner}"):
        backends.resolve("cuda", torch.device("cuda"), owner)


@pytest.mark.skipif(not fcn_kernels._ext.HAS_EXTENSION, reason="_C not built")
def test_build_check_knows_every_registered_op():
    """Every C++ op the extension registers is a kernel of some op in backends._KERNELS (a new op, or a new
    backward op, must join the build check)."""
    names = {n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("fcn_kernels::")}
    assert {n for n in names if not n.endswith("_triton")} == set(ALL_KERNELS)
