"""rarefied_conv2d vs stock F.conv2d(dilation=s) (oneDNN on CPU) vs the explicit rarefied filter
(rarefy_filter + stride-1 conv, the naive reading of the paper), forward and forward+backward:
VGG16 conv5-like dense shapes (512 -> 512, 3x3, rarefaction 2 and 4, 64x64, batch 1 under
FCN_BENCH_FULL=1; 64 -> 64 on 32x32 otherwise) and depthwise 3x3 shapes (21 and 64 channels,
rarefaction 2..8). "auto" is backend=None, which sends dense layers to the stock op by the rule of
fcn_kernels/backends.py (within a few percent of "stock" there: the issue's 1.1x bound); "fused" forces our
kernels (backend "cpu" / "cuda"). Then shift_and_stitch (f^2 passes) vs rarefy (one pass) on a small net.
Compare side by side: `pytest benchmarks/bench_rarefied_conv2d.py --benchmark-group-by=group`."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import DEVICES, FULL, step
from fcn_kernels import rarefied_conv2d, rarefy, rarefy_filter, shift_and_stitch

DENSE_C, DENSE_HW = (512, 64) if FULL else (64, 32)
DW_HW = 64 if FULL else 32
DW_RAREFACTIONS = [2, 3, 4, 6, 8] if FULL else [2, 8]
IMPLS = ["auto", "fused", "stock", "explicit"]


def _conv(impl, device):
    if impl == "auto":
        return lambda x, w, b, r, g: rarefied_conv2d(x, w, b, rarefaction=r, padding=r, groups=g)
    if impl == "fused":
        return lambda x, w, b, r, g: rarefied_conv2d(x, w, b, rarefaction=r, padding=r, groups=g, backend=device)
    if impl == "stock":
        return lambda x, w, b, r, g: F.conv2d(x, w, b, padding=r, dilation=r, groups=g)
    return lambda x, w, b, r, g: F.conv2d(x, rarefy_filter(w, r), b, padding=r, groups=g)


def _run(benchmark, sync, impl, cin, cout, groups, hw, r, backward, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, cin, hw, hw, generator=g).to(device).requires_grad_(backward)
    w = (torch.randn(cout, cin // groups, 3, 3, generator=g) * 0.05).to(device).requires_grad_(backward)
    b = torch.randn(cout, generator=g).to(device).requires_grad_(backward)
    conv = _conv(impl, device)
    benchmark.extra_info["gflop"] = 2 * cout * (cin // groups) * 9 * hw * hw / 1e9
    benchmark(step(lambda: conv(x, w, b, r, groups), [x, w, b], backward, sync))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("r", [2, 4])
@pytest.mark.parametrize("impl", IMPLS)
def test_dense(benchmark, sync, impl, r, backward, device):
    benchmark.group = (
        f"dense {DENSE_C}->{DENSE_C} 3x3 r{r} {DENSE_HW}x{DENSE_HW} b1 {'fwd+bwd' if backward else 'fwd'} {device}"
    )
    _run(benchmark, sync, impl, DENSE_C, DENSE_C, 1, DENSE_HW, r, backward, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("r", DW_RAREFACTIONS)
@pytest.mark.parametrize("channels", [21, 64])
@pytest.mark.parametrize("impl", IMPLS)
def test_depthwise(benchmark, sync, impl, channels, r, backward, device):
    benchmark.group = f"depthwise {channels}ch 3x3 r{r} {DW_HW}x{DW_HW} b1 {'fwd+bwd' if backward else 'fwd'} {device}"
    _run(benchmark, sync, impl, channels, channels, channels, DW_HW, r, backward, device)


def _small_net():
    # total stride 4: the paper's cost argument, f^2 = 16 passes vs one rarefied pass
    def conv_relu_pool(cin, cout):
        return nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2)

    layers = [*conv_relu_pool(3, 32), *conv_relu_pool(32, 32), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(32, 21, 1)).eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["shift_and_stitch", "rarefy"])
def test_dense_output(benchmark, sync, impl, device):
    hw = 128 if FULL else 48
    net = _small_net().to(device)
    x = torch.randn(1, 3, hw, hw, device=device)
    benchmark.group = f"dense output of a stride-4 net {hw}x{hw} {device}"
    with torch.no_grad():
        if impl == "rarefy":
            dense = rarefy(net)
            benchmark(lambda: (dense(x), sync()))
        else:
            benchmark(lambda: (shift_and_stitch(net, x, 4), sync()))
