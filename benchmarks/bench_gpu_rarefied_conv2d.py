"""rarefied_conv2d's GPU backends (CUDA C++ and Triton, each when built) vs stock cuDNN F.conv2d(dilation=r)
vs torch.compile(stock): dense VGG16 conv5-like layers (512 -> 512, 3x3, rarefaction 2 and 4, 64x64; batch 16
under FCN_BENCH_FULL=1, else batch 1) and depthwise 3x3 (21 and 64 channels, rarefaction 2..8, 64x64);
float32 and bfloat16; forward and forward+backward. CUDA only (skipped without a GPU).

Arithmetic (extra_info["arithmetic"]): the fused kernels compute float32 in IEEE float32; cuDNN's float32
convolutions use TF32 by default (torch.backends.cudnn.allow_tf32), so the float32 "stock" and "compiled"
rows are TF32, and "stock-ieee" is the stock op with TF32 off, the like-for-like float32 comparison.

extra_info holds the op's GFLOP (dense rows, with the achieved TFLOP/s for the fused rows) and the bytes a
depthwise forward must move at least, with that floor's share of the median time at the copy bandwidth
measured in the same run (`copy_fraction`, 1.0 = copy speed):
    pytest benchmarks/bench_gpu_rarefied_conv2d.py --benchmark-group-by=group --benchmark-columns=median
"""

import pytest
import torch
import torch.nn.functional as F

import fcn_kernels
from conftest import DEVICES, FULL, step
from fcn_kernels import rarefied_conv2d
from fcn_kernels.app import bench

if "cuda" not in DEVICES:
    pytest.skip("the GPU benchmarks need a CUDA GPU (and cuda in FCN_BENCH_DEVICES)", allow_module_level=True)
BACKENDS = [b for b in ("cuda", "triton") if b in fcn_kernels.available_backends()]

BATCH = 16 if FULL else 1
HW = 64
DW_RAREFACTIONS = [2, 3, 4, 6, 8] if FULL else [2, 8]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
IMPLS = BACKENDS + ["stock", "stock-ieee", "compiled"]  # stock-ieee: float32 with TF32 off


def _stock(x, w, b, r, groups):
    return F.conv2d(x, w, b, padding=r, dilation=r, groups=groups)


def _impl(name):
    if name in BACKENDS:
        return lambda x, w, b, r, g: rarefied_conv2d(x, w, b, rarefaction=r, padding=r, groups=g, backend=name)
    if name == "stock":
        return _stock
    if name == "stock-ieee":

        def ieee(*args):
            with bench.cudnn_tf32(False):
                return _stock(*args)

        return ieee
    torch._dynamo.reset()
    return torch.compile(_stock)


def _arithmetic(benchmark, impl, dtype):
    """Records the column's arithmetic (defect 5: cuDNN's float32 is TF32 by default); stock-ieee is a
    column of float32 only."""
    if impl == "stock-ieee" and dtype != "fp32":
        pytest.skip("TF32 concerns float32 only")
    benchmark.extra_info["arithmetic"] = bench.arithmetic(DTYPES[dtype], "cuda", stock=impl in ("stock", "compiled"))


def _inputs(cin, cout, groups, r, dtype, backward):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, cin, HW, HW, generator=g).to("cuda", dtype).requires_grad_(backward)
    w = (torch.randn(cout, cin // groups, 3, 3, generator=g) * 0.05).to("cuda", dtype).requires_grad_(backward)
    b = torch.randn(cout, generator=g).to("cuda", dtype).requires_grad_(backward)
    return x, w, b


def _median(benchmark):
    stats = getattr(benchmark, "stats", None)
    return stats.stats.median if stats is not None else None


@pytest.fixture(scope="module")
def copy_bw():
    """Bytes/s of a device copy of a depthwise layer's size (64 channels), measured once in this run."""
    return bench.copy_bandwidth(2 * BATCH * 64 * HW * HW * 4, "cuda")


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("r", [2, 4])
@pytest.mark.parametrize("impl", IMPLS)
def test_dense(benchmark, impl, r, dtype, backward):
    benchmark.group = f"dense 512->512 3x3 r{r} {HW}x{HW} b{BATCH} {dtype} {'fwd+bwd' if backward else 'fwd'}"
    _arithmetic(benchmark, impl, dtype)
    x, w, b = _inputs(512, 512, 1, r, DTYPES[dtype], backward)
    fn = _impl(impl)
    gflop = 2 * BATCH * 512 * 512 * 9 * HW * HW / 1e9 * (3 if backward else 1)
    benchmark.extra_info["gflop"] = gflop
    benchmark(step(lambda: fn(x, w, b, r, 1), [x, w, b], backward, torch.cuda.synchronize))
    median = _median(benchmark)
    if median:
        benchmark.extra_info["tflops"] = gflop / median / 1e3


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("r", DW_RAREFACTIONS)
@pytest.mark.parametrize("channels", [21, 64])
@pytest.mark.parametrize("impl", IMPLS)
def test_depthwise(benchmark, copy_bw, impl, channels, r, dtype, backward):
    benchmark.group = f"depthwise {channels}ch 3x3 r{r} {HW}x{HW} b{BATCH} {dtype} {'fwd+bwd' if backward else 'fwd'}"
    _arithmetic(benchmark, impl, dtype)
    x, w, b = _inputs(channels, channels, channels, r, DTYPES[dtype], backward)
    fn = _impl(impl)
    nbytes = 2 * x.numel() * x.element_size()  # read x, write y (same size: padding r keeps 64x64)
    benchmark.extra_info["min_bytes"] = nbytes
    benchmark.extra_info["copy_gbps"] = copy_bw / 1e9
    benchmark(step(lambda: fn(x, w, b, r, channels), [x, w, b], backward, torch.cuda.synchronize))
    median = _median(benchmark)
    if median and not backward and impl in BACKENDS:  # the floor counts forward bytes only
        benchmark.extra_info["copy_fraction"] = nbytes / copy_bw / median
