"""Error bounds for comparing a kernel with the float64 reference: the formula is
fcn_kernels._tolerance's (shared with `fcn-kernels doctor`)."""

from fcn_kernels._tolerance import error_bound, worst_error  # noqa: F401  (error_bound: for the tests)


def assert_close_bound(actual, exact, abs_sum, n_terms, dtype, what=""):
    """actual: kernel result; exact, abs_sum: float64 reference on the same (rounded) inputs."""
    worst, err, _ = worst_error(actual, exact, abs_sum, n_terms, dtype)
    assert worst <= 1.0, f"{what}: error exceeds bound by {worst:.3g}x (error {err:.3g})"
