"""rarefied_conv2d's Triton kernels beyond the op suite (tests/test_rarefied_conv2d.py, backend `triton`): the
weight gradient's split reduction, the launcher's channel blocks, and the benchmark's VGG-size shapes on a GPU.
On CUDA tensors with a GPU, else on CPU tensors under TRITON_INTERPRET=1 (conftest.py)."""

import math

import pytest
import torch

from _helpers.triton_env import NOT_RUNNABLE, RUNNABLE

if not RUNNABLE:
    pytest.skip(NOT_RUNNABLE, allow_module_level=True)
pytest.importorskip("triton")

from _helpers.rarefied_cases import SMALL, case, check_against_reference
from fcn_kernels.triton import rarefied_conv2d as trc


def test_weight_gradient_splits(seed, monkeypatch):
    """Several partial sums per weight element (summed in a fixed order), depthwise and dense."""
    monkeypatch.setattr(trc, "splits", lambda tasks, rows, device: 3)
    check_against_reference(SMALL["depthwise"], "triton", torch.float32)
    check_against_reference(SMALL["dense-dot"], "triton", torch.float32)


def test_dense_channel_blocks():
    """The launcher's channel blocks: tl.dot's [16, 16] minimum, capped as the AOT table compiles them."""
    assert trc._channel_blocks(8, 8, True) == (16, 16)
    assert trc._channel_blocks(512, 512, True, "ieee", torch.bfloat16) == (trc.DOT_MAX_CI, trc.DOT_MAX_CO)
    assert trc._channel_blocks(512, 512, True, "tf32", torch.float32) == (trc.DOT_MAX_CI, trc.DOT_MAX_CO)
    assert trc._channel_blocks(512, 512, True, "ieee", torch.float32) == (trc.IEEE_MAX_CI, trc.IEEE_MAX_CO)
    assert trc._channel_blocks(3, 200, False) == (4, trc.FMA_MAX_C)
    assert math.prod(trc._channel_blocks(1, 1, False)) == 1


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vgg_conv5_and_depthwise_full_size(dtype):
    """The benchmark shapes once: dense 512 -> 512 3x3 r2 64x64 (tl.dot) and depthwise 64 channels r4."""
    for cin, cout, groups, r in ((512, 512, 1, 2), (64, 64, 64, 4)):
        check_against_reference(case(2, cin, cout, groups, 64, 64, 3, r, r, True), "triton", dtype)
