"""FCN-8s's last stage as labels: upsample_argmax against the fused scores followed by argmax and the stock
composition followed by argmax (upscore8: stride 8, kernel 16, out_offset 31, 21 classes, depthwise
bilinear; VOC 500x500 and 256x256 with FCN_BENCH_FULL=1). extra_info: the bytes each writes."""

import pytest
import torch

from conftest import DEVICES, FULL
from fcn_kernels import bilinear_kernel, reference, upsample_argmax, upsample_skip
from fcn_kernels.app import bench

IMAGES = [500, 256] if FULL else [64]
BATCHES = [1, 4] if FULL else [1]
IMPLS = {
    "upsample_argmax": lambda x, w, kw: upsample_argmax(x, w, **kw),
    "fused+argmax": lambda x, w, kw: upsample_skip(x, w, **kw).argmax(1),
    "stock+argmax": lambda x, w, kw: reference.upsample_skip(x, w, **kw).argmax(1),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scores", ["noise", "regions"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("impl", IMPLS)
def test_last_stage_labels(benchmark, sync, impl, image, batch, scores, device):
    """scores: torch.randn (no label sure: upsample_argmax's worst case on the CPU) or bench.region_scores (a
    segmentation's, most labels sure)."""
    st = bench.fcn8s_stages(image)[2]
    g = torch.Generator().manual_seed(0)
    if scores == "regions":
        x = bench.region_scores(batch, 21, st.in_hw, generator=g).to(device)
    else:
        x = torch.randn(batch, 21, *st.in_hw, generator=g).to(device)
    w = bilinear_kernel(21, st.kernel, 21, device=device)
    kw = dict(stride=st.stride, groups=21, out_offset=st.out_offset, out_size=st.out_size)
    fn = IMPLS[impl]
    benchmark.group = f"upscore8 labels {image}x{image} b{batch} {scores} {device}"
    labels = fn(x, w, kw)
    scores_bytes = 0 if impl == "upsample_argmax" else batch * 21 * labels[0].numel() * x.element_size()
    benchmark.extra_info["bytes_written"] = labels.numel() * labels.element_size() + scores_bytes

    def run():
        fn(x, w, kw)
        sync()

    benchmark(run)
