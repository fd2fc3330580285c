"""FCN-8s's last stage as labels: upsample_argmax against the fused scores followed by argmax and the stock
composition followed by argmax (upscore8: stride 8, kernel 16, out_offset 31, 21 classes, depthwise
bilinear; VOC 500x500 and 256x256 with FCN_BENCH_FULL=1). extra_info: the bytes each writes. And the dense
rule (fcn_kernels/backends.py, ARGMAX_DENSE_PRODUCTS): ours against the stock scores + argmax on dense groups,
over classes, strides and planes (FCN_BENCH_FULL=1: the grid of
benchmarks/results/2026-12-06-cpu-amd-epyc-zen4-2core-argmax-dense-rule.json)."""

import pytest
import torch

from conftest import DEVICES, FULL
from fcn_kernels import backends, bilinear_kernel, reference, upsample_argmax, upsample_skip
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


# (classes, stride, input side) for dense 21 x 21 to 150 x 150 weights, kernel 2 * stride
DENSE = (
    [(c, s, h) for c in (21, 32, 40, 48, 60, 100, 150) for s, h in ((2, 16), (2, 64), (8, 8), (8, 20), (4, 16))]
    if FULL
    else [(21, 2, 4), (24, 2, 4)]
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("classes,stride,side", DENSE)
@pytest.mark.parametrize("impl", ["cpu", "reference"])
def test_dense_rule(benchmark, impl, classes, stride, side, dtype):
    """The automatic choice's inputs: products per output pixel (classes**2 * 4 here) and the plane; extra_info
    says which path backend=None takes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, classes, side, side, generator=g).to(dtype)
    w = (0.1 * torch.randn(classes, classes, 2 * stride, 2 * stride, generator=g)).to(dtype)
    out = (side - 1) * stride + 2 * stride
    benchmark.group = f"upsample_argmax dense {classes} classes stride {stride} {out}x{out} {dtype} cpu"
    benchmark.extra_info.update(
        products=classes * classes * 4,
        auto=backends.explain(
            "upsample_argmax",
            x.device,
            cin_g=classes,
            cout_g=classes,
            kernel=(2 * stride,) * 2,
            stride=(stride,) * 2,
            out_size=(out, out),
            channels=classes,
        ),
    )
    benchmark(upsample_argmax, x, w, stride=stride, backend=impl)
