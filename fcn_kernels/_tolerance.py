"""Error bounds for comparing a kernel with the float64 reference (used by the tests and `doctor`).

Every op here is a sum of products. A kernel that accumulates in float32 (or
better) and rounds once to the output dtype errs by at most
    eps(out) * |exact|  +  n * eps(float32) * (sum of |products|)
where n is the number of terms, plus half the spacing of the dtype's subnormals
(TINY: results below the smallest normal number round to that grid).
`sum of |products|` is the same op applied to the absolute values of its
(linear) inputs, computed by the reference. The bound is that of IEEE float32
accumulation: TF32 (cuDNN's default for float32 convolutions) does not meet it.
"""

import torch

EPS = {torch.float64: 2.0**-52, torch.float32: 2.0**-23, torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}
TINY = {torch.float64: 2.0**-1075, torch.float32: 2.0**-150, torch.bfloat16: 2.0**-134, torch.float16: 2.0**-25}


def error_bound(exact, abs_sum, n_terms, dtype):
    """The per-element bound on |actual - exact| for a kernel computing in `dtype`."""
    acc_eps = EPS[torch.float64] if dtype == torch.float64 else EPS[torch.float32]
    return EPS[dtype] * exact.abs() + 2 * n_terms * acc_eps * abs_sum + TINY[dtype] + 1e-300


def worst_error(actual, exact, abs_sum, n_terms, dtype):
    """(error / bound at the worst element, that element's error, its bound); (0, 0, 0) when empty.
    actual: kernel result; exact, abs_sum: float64 reference on the same (rounded) inputs."""
    err = (actual.double() - exact).abs().flatten()
    if not err.numel():
        return 0.0, 0.0, 0.0
    bound = error_bound(exact, abs_sum, n_terms, dtype).flatten()
    i = (err / bound).argmax()
    return (err[i] / bound[i]).item(), err[i].item(), bound[i].item()
