"""upsample_skip vs the stock composition (conv_transpose2d + slice + add) and torch.compile of it, at
the FCN-8s head stages (VOC 500x500, 21 classes) and for the whole head; forward and forward+backward;
depthwise bilinear (FCN's fixed upsampling) and dense 21x21 weights. extra_info holds the bytes moved
and the copy-bandwidth floor measured in the same run."""

from functools import partial

import pytest
import torch

from conftest import DEVICES, FULL, step
from fcn_kernels import reference, upsample_skip
from fcn_kernels.app import bench

IMAGE = 500 if FULL else 64
BATCHES = [1, 8] if FULL else [1]
IMPLS = ["fused", "stock", "compiled"]
STAGES = bench.fcn8s_stages(IMAGE)


def _impl(name):
    if name == "fused":
        return upsample_skip
    if name == "stock":
        return reference.upsample_skip
    torch._dynamo.reset()
    return torch.compile(reference.upsample_skip)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("weights", ["depthwise", "dense"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("stage", range(3), ids=[s.name for s in STAGES])
@pytest.mark.parametrize("impl", IMPLS)
def test_stage(benchmark, sync, impl, stage, batch, weights, backward, device):
    st = STAGES[stage]
    x, w, skip, kw = bench.stage_inputs(st, batch, dense=weights == "dense", device=device, requires_grad=backward)
    fn = _impl(impl)
    benchmark.group = f"{st.name} b{batch} {weights} {'fwd+bwd' if backward else 'fwd'} {device}"
    inputs = [t for t in (x, skip) if t is not None]
    y = fn(x, w, None, skip, **kw)
    benchmark.extra_info["out_bytes"] = y.numel() * y.element_size()
    benchmark(step(lambda: fn(x, w, None, skip, **kw), inputs, backward, sync))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("weights", ["depthwise", "dense"])
@pytest.mark.parametrize("batch", BATCHES + ([4] if FULL else []))
@pytest.mark.parametrize("impl", IMPLS + ["copy-floor"])
def test_head(benchmark, sync, impl, batch, weights, backward, device):
    """The three stages together; 'copy-floor' copies the head's minimum bytes (bench.head_bytes)
    into a fresh tensor: the memory-bandwidth floor of a fused head, measured in the same run."""
    benchmark.group = f"FCN-8s head b{batch} {weights} {'fwd+bwd' if backward else 'fwd'} {device}"
    nbytes = bench.head_bytes(batch, image=IMAGE)
    benchmark.extra_info["head_bytes"] = nbytes
    if impl == "copy-floor":
        src = torch.ones(nbytes // 8, device=device)  # read + write = nbytes
        benchmark(lambda: (torch.empty_like(src).copy_(src), sync()))
        return
    scores, ws, groups = bench.head_inputs(
        batch, image=IMAGE, dense=weights == "dense", device=device, requires_grad=backward
    )
    if impl == "fused":
        head = partial(bench.fused_head, scores, ws, groups, IMAGE)
    else:
        stock = (lambda *a: bench.stock_head(*a, IMAGE)) if impl == "stock" else bench.compiled_stock_head(IMAGE)
        head = partial(stock, scores, ws, groups)
    benchmark(step(head, scores, backward, sync))
