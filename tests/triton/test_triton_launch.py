"""How the Triton kernels are launched (fcn_kernels/triton/utils.py): every launch on its tensors' device
(triton-lang/triton#2441), long tap loops as runtime loops (stride 1 with a 16 x 16 filter), and
FCN_KERNELS_TRITON_AUTOTUNE=0 pinning every kernel to one config, with the same weight-gradient bits in
two processes. Under TRITON_INTERPRET=1 on CPU (tiny shapes) or on a GPU; the two-GPU test needs two."""

import contextlib
import hashlib
import os
import subprocess
import sys

import pytest
import torch

from _helpers.triton_env import DEVICE, NOT_RUNNABLE, RUNNABLE

if not RUNNABLE:
    pytest.skip(NOT_RUNNABLE, allow_module_level=True)
pytest.importorskip("triton")

from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

import fcn_kernels
from _helpers.tolerances import assert_close_bound
from fcn_kernels import reference
from fcn_kernels.triton import utils

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _grads(fn, inputs, grad_out, **kwargs):
    """fn(*inputs) and the gradients of every input."""
    leaves = [t.detach().requires_grad_(True) for t in inputs]
    y = fn(*leaves, **kwargs)
    return y.detach(), torch.autograd.grad(y, leaves, grad_out)


def _check(op, inputs, out_shape, n_terms, device=DEVICE, dtype=torch.float32, **kwargs):
    """Triton's forward and every input gradient of `op` against the float64 reference at tolerances.py's
    bound for n_terms products a result."""
    inputs = [t.to(dtype) for t in inputs]
    go = torch.randn(out_shape, dtype=dtype)
    y, grads = _grads(
        getattr(fcn_kernels, op), [t.to(device) for t in inputs], go.to(device), backend="triton", **kwargs
    )
    exact_in = [t.double() for t in inputs]
    exact, exact_grads = _grads(getattr(reference, op), exact_in, go.double(), **kwargs)
    bound, bound_grads = _grads(getattr(reference, op), [t.abs() for t in exact_in], go.double().abs(), **kwargs)
    assert y.device == torch.device(device) and y.shape == exact.shape
    assert_close_bound(y.cpu(), exact, bound, n_terms, dtype, f"{op} forward")
    for i, (g, e, b) in enumerate(zip(grads, exact_grads, bound_grads)):
        assert g.device == torch.device(device) and g.shape == e.shape
        assert_close_bound(g.cpu(), e, b, n_terms, dtype, f"{op} grad of input {i}")


def _upsample(cin, groups, hw, k, n=1):
    """upsample_skip at stride 1 with a k x k filter: (inputs x, weight, bias and a skip one row and column
    wider than the output on each side, output shape, products a result sums at most, keyword arguments)."""
    x, w, b = torch.randn(n, cin, *hw), torch.randn(cin, cin // groups, k, k), torch.randn(cin)
    full = [s + k - 1 for s in hw]
    skip = torch.randn(n, cin, *(s + 2 for s in full))
    terms = max(cin // groups * k * k + 2, n * full[0] * full[1])
    return [x, w, b, skip], (n, cin, *full), terms, dict(stride=1, groups=groups, skip_offset=(1, 1))


def _rarefied(cin, groups, hw, n=1):
    """rarefied_conv2d, 3x3 at rarefaction 2 with padding 2 (output the input's size), like _upsample."""
    x, w, b = torch.randn(n, cin, *hw), torch.randn(cin, cin // groups, 3, 3), torch.randn(cin)
    terms = max(cin // groups * 9 + 1, n * hw[0] * hw[1])
    return [x, w, b], (n, cin, *hw), terms, dict(rarefaction=2, padding=2, groups=groups)


# ---------------------------------------------------------------------------------------------------------
# the device guard
# ---------------------------------------------------------------------------------------------------------
def test_every_launch_is_inside_a_guard_for_its_tensors_device(seed, monkeypatch):
    """Each op's forward and backward through every kernel family (depthwise, dense, bias and skip): each
    kernel launch must happen inside utils.device_guard for its tensors' device."""
    active, guarded, launches, kernels = [], [], [], set()

    @contextlib.contextmanager
    def spy_guard(device):
        active.append(device)
        guarded.append(device)
        try:
            yield
        finally:
            active.pop()

    kernel_class = InterpretedFunction if utils.INTERPRET else JITFunction
    original_run = kernel_class.run

    def spy_run(self, *args, **kwargs):  # every launch, autotuned or not
        launches.append(list(active))
        kernels.add(f"{self.fn.__module__.rsplit('.', 1)[-1]}.{self.fn.__name__}")
        return original_run(self, *args, **kwargs)

    monkeypatch.setattr(utils, "device_guard", spy_guard)
    monkeypatch.setattr(kernel_class, "run", spy_run)
    for cin, groups in ((2, 2), (3, 1)):  # depthwise, dense FMA
        inputs, out_shape, terms, kw = _upsample(cin, groups, (2, 3), 2)
        _check("upsample_skip", inputs, out_shape, terms, **kw)
        inputs, out_shape, terms, kw = _rarefied(cin, groups, (4, 5))
        _check("rarefied_conv2d", inputs, out_shape, terms, **kw)
    device = torch.device(DEVICE)
    assert launches and all(stack == [device] for stack in launches), f"a launch outside device_guard: {launches}"
    assert all(d == device for d in guarded)
    families = [
        f"{m}.{k}"
        for m in ("upsample_skip", "rarefied_conv2d")
        for k in (
            "_fwd_dw_kernel",
            "_fwd_dense_kernel",
            "_bwd_input_dw_kernel",
            "_bwd_input_dense_kernel",
            "_bwd_weight_dw_kernel",
            "_bwd_weight_dense_kernel",
        )
    ] + ["bias_grad._bias_grad_kernel"]
    assert kernels == set(families)


def test_device_guard_selects_the_tensors_cuda_device():
    guard = utils.device_guard(torch.device("cuda", 1))  # not entered: no GPU needed
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    with utils.device_guard(torch.device("cpu")):
        pass


@pytest.mark.cuda
def test_tensors_on_the_second_gpu(seed):
    """The op on cuda:1 while cuda:0 is current: without the guard Triton launches on cuda:0 and fails on
    (or reads garbage from) cuda:1's memory."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    with torch.cuda.device(0):
        for cin, groups in ((16, 1), (3, 3)):  # dense tl.dot, depthwise
            inputs, out_shape, terms, kw = _upsample(cin, groups, (3, 4), 4, n=2)
            _check("upsample_skip", inputs, out_shape, terms, device="cuda:1", **kw)
            inputs, out_shape, terms, kw = _rarefied(cin, groups, (6, 7), n=2)
            _check("rarefied_conv2d", inputs, out_shape, terms, device="cuda:1", **kw)


# ---------------------------------------------------------------------------------------------------------
# tap loops: runtime loops past utils.MAX_UNROLLED_TAPS
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cin, groups", [(2, 2), (2, 1)], ids=["depthwise", "dense-fma"])
def test_stride_1_with_a_16_tap_filter(seed, cin, groups):
    """16 x 16 = 256 taps a phase, over the unrolling limit: the forward's runtime tap loop (and the
    backward kernels, whose tap loops are always runtime loops) against float64."""
    assert 16 * 16 > utils.MAX_UNROLLED_TAPS
    inputs, out_shape, terms, kw = _upsample(cin, groups, (2, 3), 16)
    _check("upsample_skip", inputs, out_shape, terms, **kw)


# ---------------------------------------------------------------------------------------------------------
# FCN_KERNELS_TRITON_AUTOTUNE=0
# ---------------------------------------------------------------------------------------------------------
_CONFIG_COUNTS = """
from fcn_kernels.triton import bias_grad, rarefied_conv2d, upsample_skip
tuners = [t for m in (upsample_skip, rarefied_conv2d, bias_grad) for t in m.AUTOTUNED.values()]
assert all(t.configs[0] is t.all_configs[0] for t in tuners)
print(max(len(t.configs) for t in tuners), min(len(t.all_configs) for t in tuners))
"""


def _python(code, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FCN_KERNELS_TRITON_AUTOTUNE")}
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**base, "PYTHONPATH": ROOT, **env},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.split()


def test_switch_pins_every_kernel_to_its_first_config():
    """Compiled (not interpreted) Triton, no GPU needed to build the tuners: with the switch, one config per
    kernel (its first); without, the lists as written."""
    most, fewest_written = map(int, _python(_CONFIG_COUNTS, FCN_KERNELS_TRITON_AUTOTUNE="0"))
    assert most == 1 and fewest_written > 1
    most, _ = map(int, _python(_CONFIG_COUNTS))
    assert most > 1


_WEIGHT_GRAD_BITS = """
import hashlib, torch
from _helpers import triton_env
from fcn_kernels.triton import rarefied_conv2d, upsample_skip, utils
assert not utils.AUTOTUNE
device = triton_env.DEVICE
g = torch.Generator().manual_seed(1234)
rand = lambda *s: torch.randn(*s, generator=g).to(device)
digest = hashlib.sha256()
x, go = rand(2, 16, 5, 6), rand(2, 16, 11, 13)  # upsample_skip, stride 2, kernel 3: dense tl.dot
digest.update(upsample_skip.backward_weight(go, x, [16, 16, 3, 3], (2, 2), 1, (0, 0)).cpu().numpy().tobytes())
x, go = rand(2, 3, 9, 8), rand(2, 3, 5, 4)  # rarefied_conv2d depthwise, 3x3, rarefaction 2
digest.update(rarefied_conv2d.backward_weight(go, x, [3, 1, 3, 3], (2, 2), (0, 0), 3).cpu().numpy().tobytes())
print(digest.hexdigest())
"""


def test_switch_gives_the_same_weight_gradient_bits_in_two_processes():
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # for _helpers
    env = dict(FCN_KERNELS_TRITON_AUTOTUNE="0", PYTHONPATH=f"{ROOT}{os.pathsep}{tests}")
    if DEVICE == "cpu":
        env["TRITON_INTERPRET"] = "1"
    runs = [_python(_WEIGHT_GRAD_BITS, **env) for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 1 and len(runs[0][0]) == len(hashlib.sha256().hexdigest())
