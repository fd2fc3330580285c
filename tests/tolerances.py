"""Error bounds for comparing a kernel with the float64 reference.

Every op here is a sum of products. A kernel that accumulates in float32 (or
better) and rounds once to the output dtype errs by at most
    eps(out) * |exact|  +  n * eps(float32) * (sum of |products|)
where n is the number of terms, plus half the spacing of the dtype's subnormals
(TINY: results below the smallest normal number round to that grid).
`sum of |products|` is the same op applied to the absolute values of its
(linear) inputs, computed by the reference.
"""
import torch

EPS = {torch.float64: 2.0**-52, torch.float32: 2.0**-23, torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}
TINY = {torch.float64: 2.0**-1075, torch.float32: 2.0**-150, torch.bfloat16: 2.0**-134, torch.float16: 2.0**-25}


def error_bound(exact, abs_sum, n_terms, dtype):
    """The largest error allowed, element by element, for a result in `dtype`."""
    acc_eps = EPS[torch.float64] if dtype == torch.float64 else EPS[torch.float32]
    return EPS[dtype] * exact.abs() + 2 * n_terms * acc_eps * abs_sum + TINY[dtype] + 1e-300


def assert_close_bound(actual, exact, abs_sum, n_terms, dtype, what=""):
    """actual: kernel result; exact, abs_sum: float64 reference on the same (rounded) inputs."""
    bound = error_bound(exact, abs_sum, n_terms, dtype)
    err = (actual.double() - exact).abs()
    worst = (err / bound).max().item() if err.numel() else 0.0
    assert worst <= 1.0, f"{what}: error exceeds bound by {worst:.3g}x (max err {err.max().item():.3g})"
