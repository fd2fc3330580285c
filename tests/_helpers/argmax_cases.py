"""The comparison of a backend's upsample_argmax with the float64 reference (upsample_cases' problems)."""

import torch

import fcn_kernels
from fcn_kernels import reference
from fcn_kernels._tolerance import error_bound as score_bound  # per score: a kernel's rounded vs the exact

from .backends import device_of
from .triton_env import INTERPRET
from .upsample_cases import make_inputs


def assert_labels_near_ties(labels, exact, bound, what=""):
    """labels may differ from the exact argmax only where the exact scores of the two classes are within
    their error bounds of each other (ties after rounding)."""
    want = exact.argmax(1)
    assert labels.shape == want.shape and labels.dtype == torch.int64, what
    got_s = exact.gather(1, labels[:, None])[:, 0]
    want_s = exact.gather(1, want[:, None])[:, 0]
    slack = bound.gather(1, labels[:, None])[:, 0] + bound.gather(1, want[:, None])[:, 0]
    bad = (labels != want) & (want_s - got_s > slack)
    assert not bad.any(), f"{what}: {int(bad.sum())} labels differ from the exact argmax by more than rounding"


def check_argmax(case, backend, dtype=torch.float64, *, transform=lambda t: t, device=None):
    """The backend's labels on `dtype` inputs (on `device`, default the backend's) against the float64
    reference on the same rounded values; returns (labels, the inputs as the backend got them)."""
    device = device or device_of(backend)
    inputs = make_inputs(case, dtype)
    exact_in = [t.double().cpu() if t is not None else None for t in inputs]
    abs_in = [t.abs() if t is not None else None for t in exact_in]
    kw = case.kwargs()
    on = [transform(t.to(device)) if t is not None else None for t in inputs]
    labels = fcn_kernels.upsample_argmax(*on, backend=backend, **kw).cpu()
    exact = reference.upsample_skip(*exact_in, **kw)
    bound = score_bound(exact, reference.upsample_skip(*abs_in, **kw), case.terms(), dtype)
    assert labels.shape == (case.N, *case.crop), f"shape {tuple(labels.shape)} for {case}"
    assert_labels_near_ties(labels, exact, bound, f"{dtype} {case}")
    return labels, on


def rounds_like_upsample_skip(backend):
    """Whether the backend's argmax sees the very scores of its own upsample_skip: the same gather, order and
    rounding. Not Triton on a GPU, where the compiler may contract a multiply-add into an FMA in one kernel
    and not in the other."""
    return backend != "triton" or INTERPRET


def check(case, backend, dtype, transform=lambda t: t):
    """Near the exact argmax, and (where rounding agrees) exactly the argmax of the backend's upsample_skip."""
    labels, inputs = check_argmax(case, backend, dtype, transform=transform)
    if rounds_like_upsample_skip(backend):
        scores = fcn_kernels.upsample_skip(*inputs, backend=backend, **case.kwargs())
        assert torch.equal(labels, scores.argmax(1).cpu()), f"{backend} {dtype} {case}"
    return labels
