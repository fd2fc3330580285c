"""The comparison of a backend's upsample_argmax with the float64 reference (upsample_cases' problems)."""
import torch

import fcn_kernels
from fcn_kernels import reference
from tolerances import EPS, TINY
from upsample_cases import make_inputs


def score_bound(exact, abs_sum, n_terms, dtype):
    """Per score, how far a kernel's rounded score may be from the exact one (tests/tolerances.py)."""
    acc_eps = EPS[torch.float64] if dtype == torch.float64 else EPS[torch.float32]
    return EPS[dtype] * exact.abs() + 2 * n_terms * acc_eps * abs_sum + TINY[dtype] + 1e-300


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


def check_argmax(case, backend, dtype=torch.float64, *, transform=lambda t: t, device="cpu"):
    """The backend's labels on `dtype` inputs against the float64 reference on the same rounded values;
    returns (labels, the inputs as the backend got them) for further checks."""
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
