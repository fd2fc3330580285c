"""The CUDA build: every op has CUDA kernels (checked on every CUDA build, GPU or not). The comparisons of the
CUDA kernels with the reference are in each op's suite (tests/test_<op>.py, backend `cuda`)."""

import os

import pytest
import torch

import fcn_kernels  # noqa: F401  (loads the extension, which registers the ops)

# Every op and its backward pair: each has kernels in csrc/cuda/ (upsample_argmax, interpolate_argmax: a forward
# only).
CUDA_OPS = [
    f"{op}{suffix}"
    for op in ("upsample_skip", "rarefied_conv2d")
    for suffix in ("", "_backward_input", "_backward_weight")
] + [
    "upsample_argmax",
    # the fused losses' statistics ops
    "upsample_logsumexp",
    "upsample_logsumexp_backward",
    "interpolate_logsumexp",
    "interpolate_logsumexp_backward",
    "interpolate_argmax",
]


# Checked twice: marked cuda, so that a GPU run (-m cuda) fails on a build without CUDA kernels instead of
# skipping every GPU test; and without a GPU where scripts/test.sh expects CUDA kernels (a CUDA torch and
# toolkit: FCN_EXPECT_CUDA_KERNELS=1).
@pytest.mark.parametrize("where", [pytest.param("gpu", marks=[pytest.mark.cuda, pytest.mark.gpu_check]), "build"])
@pytest.mark.parametrize("op", CUDA_OPS)
def test_cuda_kernels_registered(op, where):
    if where == "build" and os.environ.get("FCN_EXPECT_CUDA_KERNELS") != "1":
        pytest.skip("FCN_EXPECT_CUDA_KERNELS not set (scripts/test.sh sets it on a CUDA build)")
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fcn_kernels::{op}", "CUDA"), op
