"""The fused losses' test helpers (tests/test_upsample_cross_entropy.py, test_interpolate_cross_entropy.py,
test_interpolate_argmax.py):
random targets and loss options, and the comparison of a fused loss with its float64 composition, value and
gradient in every input, at error bounds derived from the arithmetic (docs/DESIGN.md §5)."""

import math
import random
from dataclasses import dataclass, replace
from typing import Callable

import torch
from hypothesis import strategies as st

from fcn_kernels._tolerance import error_bound

from .backends import device_of
from .threads import per_thread_count

F64, F32, BF16, F16 = torch.float64, torch.float32, torch.bfloat16, torch.float16
IGNORE = 255


@dataclass
class Loss:
    """The loss's own options: class weights or not, the fraction of ignored labels, sampling, reduction."""

    class_weight: bool = False
    ignore: float = 0.1
    sample_p: float = 1.0
    reduction: str = "mean"


def random_loss(rng: random.Random) -> Loss:
    return Loss(
        class_weight=rng.random() < 0.5,
        ignore=rng.choice([0.0, 0.1, 0.5, 1.0]),
        sample_p=rng.choice([1.0, 1.0, 0.5, 0.1]),
        reduction=rng.choice(["mean", "sum", "none"]),
    )


@st.composite
def losses(draw):
    return Loss(
        class_weight=draw(st.booleans()),
        ignore=draw(st.sampled_from([0.0, 0.2, 1.0])),
        sample_p=draw(st.sampled_from([1.0, 0.5])),
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
    )


def make_target(n, classes, size, loss: Loss):
    target = torch.randint(0, classes, (n, *size))
    target[torch.rand(n, *size) < loss.ignore] = IGNORE
    return target


def random_shape(rng: random.Random, max_batch=2, tiny=False):
    """A random bilinear geometry (interpolate_cross_entropy, interpolate_argmax): up, down and mixed sizes,
    integer scales and not, align_corners or not, sizes 1 included. tiny (Triton's interpreter): maps up to 6 x 6,
    outputs up to 16 x 16, up to 4 classes and one image."""
    top, scales, any_size = (6, [2], 16) if tiny else (9, [2, 4, 8], 30)
    H, W = rng.randint(1, top), rng.randint(1, top)
    kind = rng.random()
    if kind < 0.4:  # integer upsampling, the heads' case
        s = rng.choice(scales)
        size = (H * s, W * s)
    elif kind < 0.7:  # any size
        size = (rng.randint(1, any_size), rng.randint(1, any_size))
    else:  # downsampling or the same size
        size = (rng.randint(1, H), rng.randint(1, W))
    N, C = rng.randint(0, min(max_batch, 1) if tiny else max_batch), rng.randint(1, 4 if tiny else 6)
    return dict(N=N, C=C, H=H, W=W, size=size, align_corners=rng.random() < 0.4)


@dataclass
class Problem:
    """One fused loss on one geometry.

    inputs: the differentiable inputs in the test's dtype (None where absent), x first; names: theirs.
    scores(*inputs): the composition's scores (N, C, Ho, Wo), the float64 reference on float64 inputs; linear in
        each input with non-negative coefficients on absolute values (so scores(|inputs|) bounds the sums).
    fused(inputs, target, **options) / stock(inputs, target, **options): the loss, fused and composed.
    n_fwd: most terms summed into one score; n_grads: into one element of each input's gradient.
    slack(exact_inputs, dscore_abs): optional extra error bounds of the kernel's coefficients (e.g. bilinear
        weights computed in float32): (per-score bound, [per-gradient bound for each input]).
    """

    inputs: list
    names: tuple
    scores: Callable
    fused: Callable
    stock: Callable
    n_fwd: int
    n_grads: tuple
    slack: Callable = None

    def assert_same_bits(self, target, thread_counts=(None, None), **options):
        """The fused loss on these inputs and its gradients are bitwise equal across runs (assert_same_bits)."""
        assert_same_bits(lambda *v: self.fused(v, target, **options), self.inputs, thread_counts)


def grads_of(fn, leaves, grad_out):
    """fn(*leaves) and its gradient in every leaf that requires grad (None for the others; zeros where the
    graph does not reach a leaf, e.g. batch 0)."""
    y = fn(*leaves)
    wanted = [t for t in leaves if t is not None and t.requires_grad]
    got = iter(torch.autograd.grad(y, wanted, grad_out, allow_unused=True)) if wanted else iter(())
    grads = []
    for t in leaves:
        if t is None or not t.requires_grad:
            grads.append(None)
        else:
            g = next(got)
            grads.append(torch.zeros_like(t) if g is None else g)
    return y.detach(), grads


def sum_roundings(count):
    """Roundings to allow in torch's CPU sum of `count` terms: a cascade of chunked sums, whose error grows
    with log2 of the count, not with the count."""
    return 16 + 4 * math.ceil(math.log2(count + 1))


def loss_bounds(p: Problem, exact_in, target, class_weight, keep, loss: Loss, grad_out, dtype):
    """Per-element bounds on |kernel - exact| of the loss and of its gradient in each input.

    Each score the kernel computes is within e_c of the exact one: the sum-of-products bound of
    fcn_kernels/_tolerance.py (rounding to `dtype`, float32 accumulation) plus the problem's slack. The
    log-sum-exp moves by at most max_c e_c (its gradient, the softmax, sums to 1), the target's score by e_y;
    the statistics' own float32 arithmetic (C exps of relative error 2**-22, their sum, the log, the shift)
    adds `stat`. The score gradient a * (softmax - onehot) then errs by |a| softmax_c (exp(e_c + E_lse + shift
    rounding) - 1) plus its rounding, and the adjoint of the scores applied to those errors and to |dscore| (its
    accumulation error) bounds each gradient.
    """
    eps = 2.0**-51 if dtype == F64 else 2.0**-22  # the statistics' arithmetic (float64: the library exp)
    abs_in = [t.abs() if t is not None else None for t in exact_in]
    s, a = p.scores(*exact_in), p.scores(*abs_in)
    e = error_bound(s, a, p.n_fwd, dtype)
    if p.slack is not None:
        e = e + p.slack(exact_in, None)[0]
    C = s.shape[1]
    valid = target != IGNORE
    y = target.clamp(0, C - 1).unsqueeze(1)
    lse = s.logsumexp(1)
    picked = s.gather(1, y).squeeze(1)
    span = s.amax(1) - s.amin(1)
    stat = eps * (2 * C + 8 + 2 * span + 2 * lse.abs() + picked.abs() + s.abs().amax(1))
    e_lse = e.amax(1) + stat
    coef = valid.double() * keep
    if class_weight is not None:
        coef = coef * class_weight.double()[y.squeeze(1)]
    term = coef * (lse - picked)
    term_err = coef * (e_lse + e.gather(1, y).squeeze(1) + stat) + 8 * eps * term.abs()
    count = max(int(valid.sum()), 1)
    if loss.reduction == "none":
        value_bound, g = term_err, grad_out.double()
    else:
        scale = count if loss.reduction == "mean" else 1
        value_bound = (term_err.sum() + sum_roundings(term.numel()) * eps * term.abs().sum()) / scale
        g = (grad_out.double() / scale).expand_as(term)
    A = (coef * g).unsqueeze(1)
    soft = s.softmax(1)
    onehot = torch.zeros_like(s).scatter_(1, y, 1.0) * valid.unsqueeze(1)
    dscore = A * (soft - onehot)
    rel = e + e_lse.unsqueeze(1) + eps * ((s - lse.unsqueeze(1)).abs() + 4)
    D = A.abs() * soft * torch.expm1(rel) + 8 * eps * dscore.abs()
    leaves = [t.detach().requires_grad_() if t is not None else None for t in abs_in]
    _, through_d = grads_of(p.scores, leaves, D)
    _, through_abs = grads_of(p.scores, leaves, dscore.abs())
    if p.slack is not None:
        through_d = [
            d + extra if d is not None else None for d, extra in zip(through_d, p.slack(exact_in, dscore.abs())[1])
        ]
    return value_bound, through_d, through_abs


def assert_within(actual, exact, bound, what):
    err = (actual.double() - exact).abs()
    if err.numel() == 0:
        return
    worst = (err / bound).nan_to_num(nan=0.0).max().item()
    assert worst <= 1.0, f"{what}: error exceeds the bound by {worst:.3g}x (max error {err.max().item():.3g})"


def check_loss(
    p: Problem,
    target,
    loss: Loss = None,
    dtype=F64,
    *,
    backend="cpu",
    transform=lambda t: t,
    need=None,
    seed=0,
    fused=None,
    what="",
):
    """p's fused loss on its inputs (in `dtype`) passed through `transform`, against the float64 composition on the
    same rounded values: value, and gradient in the inputs selected by `need` (default: all). Everything runs on
    the backend's device (device_of), the composition and the sampling's draws included: a GPU generator's draws
    are not a CPU one's."""
    loss = loss or Loss()
    device = device_of(backend)
    p = replace(p, inputs=[t.to(device) if t is not None else None for t in p.inputs])
    target = target.to(device)
    need = need or (True,) * len(p.inputs)
    exact_in = [t.double() if t is not None else None for t in p.inputs]
    C = p.scores(*exact_in).shape[1]
    class_weight = torch.rand(C, dtype=F64, device=device) * 2 if loss.class_weight else None
    options = dict(class_weight=class_weight, ignore_index=IGNORE, sample_p=loss.sample_p, reduction=loss.reduction)
    gen = lambda: torch.Generator(target.device).manual_seed(seed)  # noqa: E731  (the same draws for both)
    leaves = [transform(t).detach().requires_grad_(bool(r)) if t is not None else None for t, r in zip(p.inputs, need)]
    exact_leaves = [t.detach().requires_grad_(bool(r)) if t is not None else None for t, r in zip(exact_in, need)]
    grad_out = torch.randn(tuple(target.shape) if loss.reduction == "none" else (), dtype=F64, device=device)
    fused = fused or p.fused
    got, grads = grads_of(
        lambda *v: fused(list(v), transform(target), generator=gen(), backend=backend, **options),
        leaves,
        grad_out.to(F64 if dtype == F64 else F32),
    )
    exact, exact_grads = grads_of(
        lambda *v: p.stock(list(v), target, generator=gen(), **options), exact_leaves, grad_out
    )
    got, grads = got.to(device), [g.to(device) if g is not None else None for g in grads]  # a fused may return CPU
    assert got.shape == exact.shape and got.dtype == (F64 if dtype == F64 else F32), (got.shape, got.dtype)
    keep = torch.ones(target.shape, dtype=F64, device=device)
    if loss.sample_p < 1:
        keep = (torch.rand(target.shape, generator=gen(), device=device) < loss.sample_p).double() / loss.sample_p
    value_bound, through_d, through_abs = loss_bounds(p, exact_in, target, class_weight, keep, loss, grad_out, dtype)
    assert_within(got, exact, value_bound + 1e-300, f"loss {what} {loss} {dtype}")
    for name, g, e, d, a, n in zip(p.names, grads, exact_grads, through_d, through_abs, p.n_grads):
        if e is None:
            assert g is None, name
            continue
        assert g.shape == e.shape and g.dtype == dtype, (name, g.shape, g.dtype)
        assert_within(g, e, error_bound(e, a, n, dtype) + d, f"grad {name} {what} {loss} {dtype}")


def assert_same_bits(loss_of, inputs, thread_counts=(None, None)):
    """loss_of(*leaves) and its gradients in every input are bitwise equal across runs, one run per entry of
    thread_counts (a torch thread count; None: the current one). The thread count is restored afterwards."""

    def run():
        leaves = [t.clone().requires_grad_() for t in inputs]
        loss = loss_of(*leaves)
        return (loss, *torch.autograd.grad(loss, leaves))

    outs = per_thread_count(run, thread_counts)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)
