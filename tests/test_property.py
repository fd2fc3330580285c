"""Property-based tests of every op on the cpu backend (hypothesis; profiles in conftest.py: "ci" by
default, `--hypothesis-profile long` for long local runs). A valid draw equals the float64 reference,
forward and backward, in every dtype and layout; an invalid one (one argument broken) raises
ValueError, TypeError or RuntimeError naming the argument, through the public function and through
torch.ops.fcn_kernels.* directly (the C++ host checks). A failure prints its reproducer."""

import pytest
import torch
from hypothesis import given, strategies as st

import fcn_kernels
from _helpers import property_cases as props

pytestmark = pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="fcn_kernels._C was not built")

HAS_ARGMAX = hasattr(fcn_kernels, "upsample_argmax")  # another branch adds it
needs_argmax = pytest.mark.skipif(not HAS_ARGMAX, reason="fcn_kernels.upsample_argmax is not in this build")


@given(case=props.upsample_cases(), **props.DRAWS)
def test_upsample_skip_equals_reference(case, dtype, layout, seed):
    torch.manual_seed(seed)
    props.check_upsample_skip(case, "cpu", dtype, layout)


@needs_argmax
@given(case=props.upsample_cases(), **props.DRAWS)
def test_upsample_argmax_equals_reference(case, dtype, layout, seed):
    torch.manual_seed(seed)
    props.check_upsample_argmax(case, "cpu", dtype, layout)


@given(case=props.rarefied_cases(), path=st.sampled_from([None, "direct", "gemm"]), **props.DRAWS)
def test_rarefied_conv2d_equals_reference(case, dtype, layout, seed, path):
    torch.manual_seed(seed)
    with props.rarefied_path(path):
        props.check_rarefied_conv2d(case, "cpu", dtype, layout)


UPSAMPLE_OPS = ["upsample_skip"] + (["upsample_argmax"] if HAS_ARGMAX else [])


@pytest.mark.parametrize("op", UPSAMPLE_OPS + ["rarefied_conv2d"])
@given(dtype=props.DTYPES, seed=props.SEEDS, data=st.data())
def test_invalid_arguments_are_named(op, dtype, seed, data):
    props.check_invalid_is_named(op, "cpu", dtype, seed, data)
