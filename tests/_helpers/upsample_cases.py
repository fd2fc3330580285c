"""The case builder of upsample_skip (and upsample_argmax): named problems, random ones, and the comparison
of a backend with the float64 reference at derived error bounds (tolerances.py)."""

import math
import random
from dataclasses import dataclass, replace

import torch

import fcn_kernels
from fcn_kernels import reference

from .backends import device_of as backend_device
from .tolerances import assert_close_bound


@dataclass
class Case:
    """One upsample_skip problem. Build it with case(...), naming only what differs from the defaults."""

    N: int = 1
    cin: int = 1
    cout: int = 1
    groups: int = 1
    H: int = 3
    W: int = 3
    K: tuple = (4, 4)
    stride: tuple = (2, 2)
    out_offset: tuple = (0, 0)
    out_size: tuple = None  # None: the default (to the end of the full output)
    skip_offset: tuple = (0, 0)
    skip_hw: tuple = None  # None: no skip
    bias: bool = False

    @property
    def full(self):
        return tuple((n - 1) * s + k for n, s, k in zip((self.H, self.W), self.stride, self.K))

    @property
    def crop(self):
        if self.out_size is not None:
            return self.out_size
        return tuple(f - o for f, o in zip(self.full, self.out_offset))

    def kwargs(self):
        return dict(
            stride=self.stride,
            groups=self.groups,
            out_offset=self.out_offset,
            out_size=self.out_size,
            skip_offset=self.skip_offset,
        )

    def terms(self):
        """Most products summed into one element by any pass (forward, grad x/w/bias)."""
        taps = math.ceil(self.K[0] / self.stride[0]) * math.ceil(self.K[1] / self.stride[1])
        return max(
            self.cin // self.groups * taps + 2,
            self.cout // self.groups * self.K[0] * self.K[1],
            self.N * self.H * self.W,
            self.N * self.crop[0] * self.crop[1],
            1,
        )


_PAIRS = ("K", "stride", "out_offset", "out_size", "skip_offset", "skip_hw")


def case(*, channels=None, **fields) -> Case:
    """Case(**fields) with ints accepted for every (rows, cols) field and channels= for cin = cout."""
    if channels is not None:
        fields.update(cin=channels, cout=channels)
    for name in _PAIRS:
        if isinstance(fields.get(name), int):
            fields[name] = (fields[name],) * 2
    return Case(**fields)


def shape_fields(groups, cin_g, cout_g, H, W, K):
    """The Case fields (upsample_skip's or rarefied_conv2d's) of `groups` groups of cin_g in and cout_g out
    channels, an H x W input and a K kernel."""
    return dict(cin=cin_g * groups, cout=cout_g * groups, groups=groups, H=H, W=W, K=K)


# FCN-8s head stages (docs/DESIGN.md §2) at reduced channels and maps, with the real offsets.
FCN8S_STAGES = {
    "upscore2+pool4": case(N=2, channels=5, groups=5, H=6, W=7, K=4, stride=2, skip_offset=5, skip_hw=(24, 26)),
    "upscore_pool4+pool3": case(N=2, channels=5, groups=5, H=9, W=8, K=4, stride=2, skip_offset=9, skip_hw=(38, 40)),
    # W = 19: the CPU input gradient's register path takes 8 input columns at a time (two blocks and a rest)
    "upscore8": case(N=2, channels=5, groups=5, H=9, W=19, K=16, stride=8, out_offset=31, out_size=(40, 120)),
    "upscore8-dense": case(N=1, channels=4, H=9, W=7, K=16, stride=8, out_offset=31, out_size=(40, 30), bias=True),
}

# FCN-16s' and FCN-32s' last upsampling (their offsets, reduced maps), wide enough for the CPU input
# gradient's register path at 4 and 2 columns at a time.
FCN_LAST_STAGES = {
    "fcn16s-upscore16": case(channels=2, groups=2, H=3, W=11, K=32, stride=16, out_offset=27, out_size=(30, 150)),
    "fcn32s-upscore32": case(channels=2, groups=2, H=3, W=11, K=64, stride=32, out_offset=19, out_size=(40, 300)),
}

# One problem per Triton kernel path, sized for its interpreter: reduced FCN-8s stages (the real kernels, strides
# and offsets, few channels, small maps), dense FMA (< 8 channels per group), dense and grouped tl.dot (>= 8 each
# way).
SMALL = {
    "upscore2+pool4-dw": case(
        N=2, channels=3, groups=3, H=4, W=5, K=4, stride=2, skip_offset=5, skip_hw=(16, 18), bias=True
    ),
    "upscore8-dw": case(channels=2, groups=2, H=5, W=4, K=16, stride=8, out_offset=31, out_size=(9, 1)),
    "dense-fma": replace(
        case(N=2, **shape_fields(2, 2, 3, 3, 4, (5, 3)), stride=(2, 3), out_offset=(1, 2), skip_offset=(0, 1)),
        skip_hw=(9, 12),
        bias=True,
    ),
    "dense-dot": case(cin=16, cout=8, K=4, stride=2, out_offset=1, skip_offset=(1, 0), skip_hw=(9, 8), bias=True),
    "grouped-dot": case(
        channels=16, groups=2, H=2, W=3, K=(3, 4), stride=(1, 2), out_offset=(0, 1), out_size=(3, 5), bias=True
    ),
}

# Memory layouts every kernel must accept; each gives the same values.
LAYOUTS = {
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t,
    # a view with doubled strides along the last dim: same values, not contiguous
    "strided": lambda t: torch.stack([t, torch.zeros_like(t)], -1).select(-1, 0),
    "transposed": lambda t: t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() == 4 else t,
}


def random_case(rng: random.Random, max_batch=2, per_group=None) -> Case:
    """A random geometry; per_group=(cin_g, cout_g) fixes the channels per group."""
    kind = rng.random()
    if per_group is not None:
        groups = rng.choice([1, 2])
        cin_g, cout_g = per_group
    elif kind < 0.3:  # depthwise, FCN's bilinear upsampling
        groups = rng.randint(1, 5)
        cin_g = cout_g = 1
    elif kind < 0.4:  # wide groups: the CPU kernel's GEMM path (>= 4 channels per group each way)
        groups = rng.choice([1, 2])
        cin_g, cout_g = rng.randint(4, 6), rng.randint(4, 6)
    elif kind < 0.5:  # Triton's tl.dot path (>= 16 channels per group each way; few, tiny maps)
        groups = rng.choice([1, 2])
        cin_g, cout_g = rng.randint(16, 18), rng.randint(16, 18)
    else:
        groups = rng.choice([1, 1, 2, 3])
        cin_g, cout_g = rng.randint(1, 3), rng.randint(1, 3)
    stride = (rng.randint(1, 8), rng.randint(1, 8))
    K = tuple(rng.randint(1, 2 * s + 2) for s in stride)
    H, W = rng.randint(1, 6), rng.randint(1, 6)
    full = ((H - 1) * stride[0] + K[0], (W - 1) * stride[1] + K[1])
    off, size = [], []
    for f in full:
        edge = rng.random()
        if edge < 0.25:  # window at the start
            o = 0
            s = rng.randint(0, f)
        elif edge < 0.5:  # window touching the end
            o = rng.randint(0, f - 1)
            s = f - o
        else:
            o = rng.randint(0, f - 1)
            s = rng.randint(0, f - o)
        off.append(o)
        size.append(s)
    default_size = rng.random() < 0.2 and all(s == f - o for s, f, o in zip(size, full, off))
    skip_hw = skip_off = None
    if rng.random() < 0.6:
        skip_off = (rng.randint(0, 3), rng.randint(0, 3))
        margin = [rng.choice([0, 0, 1, 3]) for _ in range(2)]  # 0: the skip window touches its end
        skip_hw = tuple(s + o + m for s, o, m in zip(size, skip_off, margin))
    return case(
        N=rng.randint(0, max_batch),
        **shape_fields(groups, cin_g, cout_g, H, W, K),
        stride=stride,
        out_offset=tuple(off),
        out_size=None if default_size else tuple(size),
        skip_offset=skip_off or (0, 0),
        skip_hw=skip_hw,
        bias=rng.random() < 0.5,
    )


def make_inputs(case: Case, dtype=torch.float64):
    """CPU tensors, whatever the default device."""
    x = torch.randn(case.N, case.cin, case.H, case.W, dtype=dtype, device="cpu")
    w = torch.randn(case.cin, case.cout // case.groups, *case.K, dtype=dtype, device="cpu")
    b = torch.randn(case.cout, dtype=dtype, device="cpu") if case.bias else None
    skip = torch.randn(case.N, case.cout, *case.skip_hw, dtype=dtype, device="cpu") if case.skip_hw else None
    return x, w, b, skip


def outer_product_weight(case: Case, dtype=torch.float64, kind="random"):
    """A weight for `case` (one input and one output channel per group) whose every filter is an outer product
    a x b exactly, in every dtype: "bilinear" (FCN's fixed upsampling, fcn_kernels.bilinear_kernel), or
    "random" (a and b multiples of 1/8 in [-1, 1]: products of at most 7 significant bits)."""
    assert case.cin == case.cout == case.groups, case
    if kind == "bilinear":
        assert case.K[0] == case.K[1], case
        return fcn_kernels.bilinear_kernel(case.cin, case.K[0], groups=case.groups, dtype=dtype)
    a = torch.randint(-8, 9, (case.cin, 1, case.K[0], 1), device="cpu") / 8
    b = torch.randint(-8, 9, (case.cin, 1, 1, case.K[1]), device="cpu") / 8
    return (a * b).to(dtype)


def run(fn, inputs, grad_out=None, **kwargs):
    """fn(*inputs, **kwargs) and, with grad_out, the grads of every non-None input."""
    leaves = [t.detach().requires_grad_(True) if t is not None else None for t in inputs]
    y = fn(*leaves, **kwargs)
    if grad_out is None:
        return y.detach(), None
    wanted = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, wanted, grad_out, allow_unused=True))
    # aligned with inputs: None where an input is None; zeros where it got no gradient (batch 0)
    return y.detach(), [
        None if t is None else (lambda g, t: torch.zeros_like(t) if g is None else g)(next(grads), t) for t in leaves
    ]


def check_against_reference(
    case: Case, backend: str, dtype=torch.float64, *, backward=True, transform=lambda t: t, device=None, weight=None
):
    """The backend on `dtype` inputs on `device` (default: the backend's, backend_device) passed through
    `transform` (e.g. to make them non-contiguous), against the float64 reference on CPU on the same
    rounded values (never a CUDA reference, whose float32 convolutions may use TF32). weight: this one
    (on CPU, in `dtype`) instead of a random one."""
    device = device or backend_device(backend)
    inputs = make_inputs(case, dtype)
    if weight is not None:
        inputs = (inputs[0], weight, *inputs[2:])
    go = torch.randn(case.N, case.cout, *case.crop, dtype=dtype, device="cpu") if backward else None
    on = lambda t: transform(t.to(device)) if t is not None else None  # noqa: E731
    y, grads = run(fcn_kernels.upsample_skip, [on(t) for t in inputs], on(go), backend=backend, **case.kwargs())
    assert_matches_reference(case, inputs, go, y, grads, f"{backend} {dtype}")


def assert_matches_reference(case: Case, inputs, grad_out, y, grads=None, what=""):
    """y (and grads, of x, weight, bias, skip; None where not wanted) of `case` on `inputs` (x, weight, bias,
    skip) and grad_out against the float64 reference on CPU at the bound of inputs' dtype."""
    dtype = inputs[0].dtype
    inputs = [t.detach().cpu() if t is not None else None for t in inputs]
    y, grads = y.detach().cpu(), [g.cpu() if g is not None else None for g in grads] if grads else grads
    exact_in = [t.double() if t is not None else None for t in inputs]
    abs_in = [t.abs() if t is not None else None for t in exact_in]
    go = grad_out.detach().cpu().double() if grads else None
    kw = case.kwargs()
    exact, exact_grads = run(reference.upsample_skip, exact_in, go, **kw)
    bound, bound_grads = run(reference.upsample_skip, abs_in, go.abs() if grads else None, **kw)
    assert y.shape == exact.shape, f"shape {tuple(y.shape)} != {tuple(exact.shape)} for {case}"
    assert y.dtype == dtype
    n = case.terms()
    assert_close_bound(y, exact, bound, n, dtype, f"{what} forward {case}")
    for name, g, e, b in zip(("x", "weight", "bias", "skip"), grads or (), exact_grads or (), bound_grads or ()):
        if e is None:
            continue
        assert g.shape == e.shape and g.dtype == dtype, name
        assert_close_bound(g, e, b, n, dtype, f"{what} grad {name} {case}")
