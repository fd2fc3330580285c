"""Property-based tests of the Triton kernels (tests/_helpers/property_cases.py, small geometries): a valid draw
equals the float64 reference forward and backward in every dtype and layout, an invalid one raises an
error naming the argument. A handful of examples each: under TRITON_INTERPRET=1 every launch is slow.
`--hypothesis-profile long` searches longer (on a GPU, or with patience)."""

import importlib.util

import pytest
import torch
from hypothesis import given, settings, strategies as st

from _helpers.triton_env import DEVICE, NOT_RUNNABLE, RUNNABLE

if not RUNNABLE:
    pytest.skip(NOT_RUNNABLE, allow_module_level=True)
pytest.importorskip("triton")

import fcn_kernels
from _helpers.property_cases import (
    DTYPES,
    LAYOUT_NAMES,
    SEEDS,
    check_invalid_is_named,
    check_rarefied_conv2d,
    check_upsample_argmax,
    check_upsample_skip,
    rarefied_cases,
    upsample_cases,
)

HAS_ARGMAX = (
    hasattr(fcn_kernels, "upsample_argmax")
    and importlib.util.find_spec("fcn_kernels.triton.upsample_argmax") is not None
)
# The "ci" profile's count is for the cpu backend; the interpreter gets a few (the long profile: its own).
FEW = settings(max_examples=6) if settings().max_examples <= 100 else settings()


@pytest.fixture(autouse=True)
def _default_device():
    if DEVICE == "cpu":
        yield
    else:
        with torch.device("cuda"):
            yield


@FEW
@given(case=upsample_cases(small=True), dtype=DTYPES, layout=LAYOUT_NAMES, seed=SEEDS)
def test_upsample_skip_equals_reference(case, dtype, layout, seed):
    torch.manual_seed(seed)
    check_upsample_skip(case, "triton", dtype, layout)


@pytest.mark.skipif(not HAS_ARGMAX, reason="fcn_kernels.upsample_argmax has no Triton kernel in this build")
@FEW
@given(case=upsample_cases(small=True), dtype=DTYPES, layout=LAYOUT_NAMES, seed=SEEDS)
def test_upsample_argmax_equals_reference(case, dtype, layout, seed):
    torch.manual_seed(seed)
    check_upsample_argmax(case, "triton", dtype, layout)


@FEW
@given(case=rarefied_cases(small=True), dtype=DTYPES, layout=LAYOUT_NAMES, seed=SEEDS)
def test_rarefied_conv2d_equals_reference(case, dtype, layout, seed):
    torch.manual_seed(seed)
    check_rarefied_conv2d(case, "triton", dtype, layout)


@pytest.mark.parametrize("op", ["upsample_skip", "rarefied_conv2d"])
@FEW
@given(seed=SEEDS, data=st.data())
def test_invalid_arguments_are_named(op, seed, data):
    check_invalid_is_named(op, "triton", torch.float32, seed, data, small=True)
