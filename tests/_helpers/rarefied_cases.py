"""The case builder of rarefied_conv2d: named problems, random ones, and the comparison of a backend with the
float64 reference (F.conv2d with dilation) at derived error bounds (tolerances.py), forward and backward."""

import random
from dataclasses import dataclass

import torch

import fcn_kernels
from fcn_kernels import reference

from .backends import device_of
from .tolerances import assert_close_bound


@dataclass
class Case:
    """One rarefied_conv2d problem. Build it with case(...), which takes ints for the (rows, cols) fields."""

    N: int
    cin: int
    cout: int
    groups: int
    H: int
    W: int
    K: tuple
    rarefaction: tuple
    padding: tuple
    bias: bool

    @property
    def out(self):
        return tuple(
            i + 2 * p - (k - 1) * r for i, p, k, r in zip((self.H, self.W), self.padding, self.K, self.rarefaction)
        )

    def kwargs(self):
        return dict(rarefaction=self.rarefaction, padding=self.padding, groups=self.groups)

    def terms_per_output(self):
        """Products summed into one element of (output, grad x, grad weight, grad bias)."""
        taps = self.K[0] * self.K[1]
        positions = self.N * self.out[0] * self.out[1]
        return (self.cin // self.groups * taps + 1, self.cout // self.groups * taps, positions, positions)

    def terms(self):
        """Most products summed into one element by any pass (forward, grad x/w/bias)."""
        return max(*self.terms_per_output(), 1)

    def inputs(self, dtype=torch.float64):
        """x, weight and bias (or None): CPU tensors, whatever the default device."""
        x = torch.randn(self.N, self.cin, self.H, self.W, dtype=dtype, device="cpu")
        w = torch.randn(self.cout, self.cin // self.groups, *self.K, dtype=dtype, device="cpu")
        return x, w, torch.randn(self.cout, dtype=dtype, device="cpu") if self.bias else None


_PAIRS = ("K", "rarefaction", "padding")


def case(N=1, cin=1, cout=1, groups=1, H=1, W=1, K=3, rarefaction=1, padding=0, bias=False) -> Case:
    fields = dict(K=K, rarefaction=rarefaction, padding=padding)
    fields = {k: (v, v) if isinstance(v, int) else tuple(v) for k, v in fields.items()}
    return Case(N, cin, cout, groups, H, W, bias=bias, **fields)


# One problem per Triton kernel path, sized for its interpreter: depthwise (with a channel multiplier), dense
# FMA (< 8 channels per group), dense tl.dot (>= 8 each way, channel counts that are not powers of two).
SMALL = {
    "depthwise": case(2, 3, 3, 3, 9, 11, 3, (2, 3), (2, 1), True),
    "multiplier": case(1, 2, 4, 2, 8, 7, (3, 2), (1, 4), (1, 3), True),
    "dense-fma": case(2, 4, 6, 2, 7, 8, 3, 2, (1, 2), True),
    "dense-dot": case(1, 16, 16, 1, 8, 7, 3, (2, 3), (2, 3), True),
    "grouped-dot": case(1, 24, 18, 2, 6, 7, (2, 3), (3, 2), (1, 2), False),
}


def extent(rng, k, r, most=12):
    """(input size <= most, padding <= r) along one axis for a kernel k with rarefaction r (a valid call)."""
    eff = (k - 1) * r + 1
    pad = rng.randint(max(0, -(-(eff - most) // 2)), r)
    return min(most, max(1, eff - 2 * pad) + rng.randint(0, 3)), pad


def random_case(rng: random.Random, *, small=False, n=None, k=None, r=None, groups=None, max_batch=2) -> Case:
    """A random valid geometry; k, r: ints or pairs fixing the kernel and the rarefaction. small: maps of
    at most 12 x 12 and paddings up to r, and the channels of the Triton paths (depthwise with a multiplier,
    tl.dot-wide, small dense); else kernels up to 5, paddings up to 2r, up to 12 channels a group."""
    pair = lambda v: v if v is None or isinstance(v, tuple) else (v, v)  # noqa: E731
    k, r = pair(k), pair(r)
    if small:
        kind = rng.random()
        if kind < 0.35:  # depthwise (sometimes with a channel multiplier)
            g = groups or rng.randint(1, 3)
            cin_g, cout_g = 1, rng.choice([1, 1, 2])
        elif kind < 0.55:  # wide enough for tl.dot (fp32 / bf16 / fp16)
            g = groups or 1
            cin_g, cout_g = rng.randint(8, 17), rng.randint(8, 20)
        else:
            g = groups or rng.choice([1, 1, 2, 3])
            cin_g, cout_g = rng.randint(1, 4), rng.randint(1, 4)
        K = k or (rng.choice([1, 2, 3]), rng.choice([1, 2, 3]))
        r = r or (rng.randint(1, 8), rng.randint(1, 8))
        (H, W), p = zip(*(extent(rng, ki, ri) for ki, ri in zip(K, r)))
        return Case(
            n if n is not None else rng.randint(0, max_batch),
            cin_g * g,
            cout_g * g,
            g,
            H,
            W,
            K,
            r,
            p,
            rng.random() < 0.6,
        )
    g = groups if groups is not None else rng.choice([1, 1, 1, 2, 3])
    cin = g * rng.randint(1, 6 if g > 1 else 12)
    cout = g * rng.randint(1, 6 if g > 1 else 12)
    K = k or (rng.choice([1, 2, 3, 5]), rng.choice([1, 3, 4]))
    r = r or (rng.randint(1, 8), rng.randint(1, 8))
    p = tuple(rng.randint(0, 2 * ri) for ri in r)
    H, W = (max(1, (ki - 1) * ri + 1 - 2 * pi) + rng.randint(0, 7) for ki, ri, pi in zip(K, r, p))
    return Case(n if n is not None else rng.randint(1, 3), cin, cout, g, H, W, K, r, p, rng.random() < 0.7)


def run(fn, inputs, grad_out, **kwargs):
    """fn(*inputs, **kwargs) and the grads of every input (None where an input is None, zeros where no
    gradient flowed: batch 0)."""
    leaves = [t.detach().requires_grad_(True) if t is not None else None for t in inputs]
    y = fn(*leaves, **kwargs)
    wanted = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, wanted, grad_out, allow_unused=True))
    out = []
    for t in leaves:
        g = next(grads) if t is not None else None
        out.append(None if t is None else torch.zeros_like(t) if g is None else g)
    return y.detach(), out


def check_against_reference(case: Case, backend: str, dtype=torch.float64, *, transform=lambda t: t, device=None):
    """The backend on `dtype` inputs on `device` (default: the backend's), each passed through `transform` (one
    function, or one per tensor: x, weight, bias, grad_out), against the float64 reference on CPU on the same
    rounded values, forward and the gradients of x, weight and bias, at the bound of each output's terms."""
    device = device or device_of(backend)
    transforms = transform if isinstance(transform, tuple) else (transform,) * 4
    inputs = case.inputs(dtype)
    go = torch.randn(case.N, case.cout, *case.out, dtype=dtype, device="cpu")
    on = [f(t.to(device)) if t is not None else None for f, t in zip(transforms, (*inputs, go))]
    kw = case.kwargs()
    y, grads = run(fcn_kernels.rarefied_conv2d, on[:3], on[3], backend=backend, **kw)
    assert y.is_contiguous(), f"output not contiguous for {case}"
    y, grads = y.cpu(), [g.cpu() if g is not None else None for g in grads]
    assert_within_bounds(case, inputs, go, y, grads, dtype, f"{backend} {dtype} {case}")


def assert_within_bounds(case, inputs, go, y, grads, dtype, label):
    """y and grads (rarefied_conv2d's output and its gradients of x, weight and bias for grad_out go) against
    the float64 reference on CPU on the same rounded inputs, at the bound of each output's terms."""
    exact_in = [t.cpu().double() if t is not None else None for t in inputs]
    kw = case.kwargs()
    exact, exact_grads = run(reference.rarefied_conv2d, exact_in, go.cpu().double(), **kw)
    abs_in = [t.abs() if t is not None else None for t in exact_in]
    bound, bound_grads = run(reference.rarefied_conv2d, abs_in, go.cpu().double().abs(), **kw)
    for name, a, e, b, n in zip(
        ("output", "grad x", "grad weight", "grad bias"),
        [y, *grads],
        [exact, *exact_grads],
        [bound, *bound_grads],
        case.terms_per_output(),
    ):
        if e is None:
            assert a is None, name
            continue
        assert a.shape == e.shape and a.dtype == dtype, f"{name} {tuple(a.shape)} {a.dtype} for {label}"
        assert_close_bound(a.cpu(), e, b, n, dtype, f"{label}: {name}")
