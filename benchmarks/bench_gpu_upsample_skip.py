"""upsample_skip's GPU backends (CUDA C++ and Triton, each when built) vs stock cuDNN (conv_transpose2d +
slice + add) vs torch.compile(stock), at the FCN-8s head stages (VOC 500x500, 21 classes, batch 16 under
FCN_BENCH_FULL=1; 64x64, batch 1 otherwise) and for the whole head; float32 and bfloat16; forward and
forward+backward; depthwise bilinear (FCN's fixed upsampling) and dense 21x21 weights. CUDA only (skipped
without a GPU).

Arithmetic (extra_info["arithmetic"]): the fused kernels compute float32 in IEEE float32; cuDNN's float32
convolutions use TF32 by default (torch.backends.cudnn.allow_tf32), so the float32 "stock" and "compiled"
rows are TF32, and "stock-ieee" is the stock op with TF32 off, the like-for-like float32 comparison.

extra_info holds the bytes the fused op must move at least and, for the fused rows, that floor's share of
the median time at the copy bandwidth measured in the same run (`copy_fraction`, 1.0 = copy speed):
    pytest benchmarks/bench_gpu_upsample_skip.py --benchmark-group-by=group --benchmark-columns=median
"""

from functools import partial

import pytest
import torch

import fcn_kernels
from conftest import DEVICES, FULL, step
from fcn_kernels import reference, upsample_skip
from fcn_kernels.app import bench

if "cuda" not in DEVICES:
    pytest.skip("the GPU benchmarks need a CUDA GPU (and cuda in FCN_BENCH_DEVICES)", allow_module_level=True)
BACKENDS = [b for b in ("cuda", "triton") if b in fcn_kernels.available_backends()]

IMAGE = 500 if FULL else 64
BATCH = 16 if FULL else 1
STAGES = bench.fcn8s_stages(IMAGE)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
IMPLS = BACKENDS + ["stock", "stock-ieee", "compiled"]  # stock-ieee: float32 with TF32 off


@pytest.fixture(scope="module")
def copy_bw():
    """Bytes/s of a device copy of the head's size, measured once in this run."""
    return bench.copy_bandwidth(bench.head_bytes(BATCH, image=IMAGE), "cuda")


def _sync():
    torch.cuda.synchronize()


def _impl(name):
    if name in BACKENDS:
        return lambda *a, **k: upsample_skip(*a, backend=name, **k)
    if name == "stock":
        return reference.upsample_skip
    if name == "stock-ieee":
        return _ieee(reference.upsample_skip)
    torch._dynamo.reset()
    return torch.compile(reference.upsample_skip)


def _ieee(fn):
    def run(*args, **kwargs):
        with bench.cudnn_tf32(False):
            return fn(*args, **kwargs)

    return run


def _arithmetic(benchmark, impl, dtype):
    """Records the column's arithmetic (defect 5: cuDNN's float32 is TF32 by default); stock-ieee is a
    column of float32 only."""
    if impl == "stock-ieee" and dtype != "fp32":
        pytest.skip("TF32 concerns float32 only")
    if impl != "copy-floor":
        benchmark.extra_info["arithmetic"] = bench.arithmetic(
            DTYPES[dtype], "cuda", stock=impl in ("stock", "compiled")
        )


def _record_fraction(benchmark, nbytes, copy_bw, backward):
    benchmark.extra_info["min_bytes"] = nbytes
    benchmark.extra_info["copy_gbps"] = copy_bw / 1e9
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not backward:  # the floor counts forward bytes only
        benchmark.extra_info["copy_fraction"] = nbytes / copy_bw / stats.stats.median


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("weights", ["depthwise", "dense"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stage", range(3), ids=[s.name for s in STAGES])
@pytest.mark.parametrize("impl", IMPLS)
def test_stage(benchmark, copy_bw, impl, stage, dtype, weights, backward):
    st = STAGES[stage]
    _arithmetic(benchmark, impl, dtype)
    x, w, skip, kw = bench.stage_inputs(
        st, BATCH, dense=weights == "dense", dtype=DTYPES[dtype], device="cuda", requires_grad=backward
    )
    fn = _impl(impl)
    benchmark.group = f"{st.name} b{BATCH} {dtype} {weights} {'fwd+bwd' if backward else 'fwd'}"
    inputs = [t for t in (x, skip) if t is not None]
    y = fn(x, w, None, skip, **kw)
    nbytes = (
        (x.numel() + 2 * y.numel()) * y.element_size()
        if skip is not None
        else (x.numel() + y.numel()) * y.element_size()
    )
    benchmark(step(lambda: fn(x, w, None, skip, **kw), inputs, backward, _sync))
    if impl in BACKENDS:
        _record_fraction(benchmark, nbytes, copy_bw, backward)


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("weights", ["depthwise", "dense"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS + ["copy-floor"])
def test_head(benchmark, copy_bw, impl, dtype, weights, backward):
    """The three stages together; 'copy-floor' copies the head's minimum bytes (bench.head_bytes) into a
    fresh tensor: the memory-bandwidth floor of a fused head, measured in the same run."""
    _arithmetic(benchmark, impl, dtype)
    dt = DTYPES[dtype]
    benchmark.group = f"FCN-8s head b{BATCH} {dtype} {weights} {'fwd+bwd' if backward else 'fwd'}"
    nbytes = bench.head_bytes(BATCH, image=IMAGE, itemsize=torch.tensor([], dtype=dt).element_size())
    if impl == "copy-floor":
        src = torch.ones(nbytes // 8, device="cuda")  # read + write = nbytes
        benchmark(lambda: (torch.empty_like(src).copy_(src), _sync()))
        return
    scores, ws, groups = bench.head_inputs(
        BATCH, image=IMAGE, dense=weights == "dense", dtype=dt, device="cuda", requires_grad=backward
    )
    if impl in BACKENDS:
        head = partial(bench.fused_head, scores, ws, groups, IMAGE, backend=impl)
    else:
        stock = bench.compiled_stock_head(IMAGE) if impl == "compiled" else lambda *a: bench.stock_head(*a, IMAGE)
        stock = _ieee(stock) if impl == "stock-ieee" else stock
        head = partial(stock, scores, ws, groups)
    benchmark(step(head, scores, backward, _sync))
    if impl in BACKENDS:
        _record_fraction(benchmark, nbytes, copy_bw, backward)
