"""upsample_skip's Triton kernels beyond the op suite (tests/test_upsample_skip.py, backend `triton`): the
weight gradient's split reduction and its dense fallback for depthwise weights, the one-pass bias/skip
gradient kernel, and FCN-8s's head at full size on a GPU. On CUDA tensors with a GPU, else on CPU tensors
under TRITON_INTERPRET=1 (conftest.py)."""

import pytest
import torch

from _helpers.triton_env import DEVICE, NOT_RUNNABLE, RUNNABLE

if not RUNNABLE:
    pytest.skip(NOT_RUNNABLE, allow_module_level=True)
pytest.importorskip("triton")

from _helpers.upsample_cases import SMALL, check_against_reference
from fcn_kernels.triton import upsample_skip as tus


def test_weight_gradient_splits_and_dense_fallback(seed, monkeypatch):
    """Several partial sums per weight element (summed in a fixed order), and the depthwise weight
    gradient through the dense kernel (taken for strides wider than the depthwise kernel's columns)."""
    monkeypatch.setattr(tus, "splits", lambda tasks, rows, device: 3)
    check_against_reference(SMALL["upscore2+pool4-dw"], "triton", torch.float32)
    check_against_reference(SMALL["dense-dot"], "triton", torch.float32)
    monkeypatch.setattr(tus, "DW_WEIGHT_MAX_STRIDE", 1)
    check_against_reference(SMALL["upscore2+pool4-dw"], "triton", torch.float32)


@pytest.mark.parametrize("which", ["bias", "skip", "both"])
def test_bias_and_skip_gradients(which):
    """The one-pass bias/skip gradient kernel, with either alone or both."""
    n, c, ho, wo, sy, sx = 2, 3, 5, 6, 2, 1
    go = torch.randn(n, c, ho, wo, device=DEVICE)
    skip_size = None if which == "bias" else [n, c, ho + 4, wo + 3]
    gb, gs = tus.backward_bias_skip(go, skip_size, (sy, sx), which != "skip")
    if which != "skip":
        torch.testing.assert_close(gb, go.sum((0, 2, 3)))
    else:
        assert gb is None
    if which != "bias":
        expect = torch.zeros(skip_size, device=DEVICE)
        expect[:, :, sy : sy + ho, sx : sx + wo] = go
        assert torch.equal(gs, expect)
    else:
        assert gs is None


@pytest.mark.cuda
def test_fcn8s_head_full_size_bf16():
    from fcn_kernels.app import bench

    for dense in (False, True):
        scores, ws, groups = bench.head_inputs(2, dense=dense, dtype=torch.bfloat16, device="cuda")
        y = bench.fused_head(scores, ws, groups, backend="triton")
        exact = bench.stock_head([s.double() for s in scores], [w.double() for w in ws], groups)
        assert (y.double() - exact).abs().max().item() < 0.1 * exact.abs().max().item() + 1e-3
