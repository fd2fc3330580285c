"""The FCN-8s head benchmark: the three upsample + skip + crop stages of DESIGN.md §2 (VOC geometry,
500x500 input, 21 classes), fused vs the stock composition vs torch.compile(stock).

Shared by `fcn-kernels bench` and benchmarks/ (pytest-benchmark), so both time the same thing.
"""
import statistics
import time
from dataclasses import dataclass

import torch

from . import reference
from .modules.upsample import bilinear_kernel
from .ops.upsample_skip import upsample_skip


@dataclass(frozen=True)
class Stage:
    name: str
    in_hw: tuple        # coarse score map
    kernel: int
    stride: int
    skip_hw: tuple      # None: no skip
    skip_offset: int
    out_offset: int
    out_size: tuple     # None: the full output


def fcn8s_stages(image=500):
    """The head's stages for a square image of this size (pad 100, ceil-mode pools, fc6 7x7)."""
    size = image + 198  # conv1_1 pad 100, then the 3x3 convs keep the size
    pools = []
    for _ in range(5):
        size = -(-size // 2)  # ceil-mode 2x2 pool
        pools.append(size)
    pool3, pool4, pool5 = pools[2], pools[3], pools[4]
    fr = pool5 - 6  # fc6: 7x7, no padding
    up2 = (fr - 1) * 2 + 4
    up4 = (up2 - 1) * 2 + 4
    return (
        Stage("upscore2+pool4", (fr, fr), 4, 2, (pool4, pool4), 5, 0, None),
        Stage("upscore_pool4+pool3", (up2, up2), 4, 2, (pool3, pool3), 9, 0, None),
        Stage("upscore8", (up4, up4), 16, 8, None, 0, 31, (image, image)),
    )


def head_inputs(batch, n_class=21, image=500, dense=False, dtype=torch.float32, device="cpu",
                requires_grad=False, seed=0):
    """(score_fr, score_pool4, score_pool3) and the three bilinear weights (depthwise or dense-diagonal)."""
    g = torch.Generator().manual_seed(seed)
    stages = fcn8s_stages(image)
    mk = lambda hw: torch.randn(batch, n_class, *hw, generator=g).to(device=device, dtype=dtype) \
        .requires_grad_(requires_grad)
    scores = [mk(stages[0].in_hw), mk(stages[0].skip_hw), mk(stages[1].skip_hw)]
    groups = 1 if dense else n_class
    weights = [bilinear_kernel(n_class, s.kernel, groups, dtype=dtype, device=device) for s in stages]
    return scores, weights, groups


def _head(fn, scores, weights, groups, image):
    score_fr, pool4, pool3 = scores
    s1, s2, s3 = fcn8s_stages(image)
    h = fn(score_fr, weights[0], None, pool4, stride=s1.stride, groups=groups, skip_offset=s1.skip_offset)
    h = fn(h, weights[1], None, pool3, stride=s2.stride, groups=groups, skip_offset=s2.skip_offset)
    return fn(h, weights[2], None, None, stride=s3.stride, groups=groups, out_offset=s3.out_offset,
              out_size=s3.out_size)


def fused_head(scores, weights, groups, image=500, backend=None):
    return _head(lambda *a, **k: upsample_skip(*a, backend=backend, **k), scores, weights, groups, image)


def stock_head(scores, weights, groups, image=500):
    return _head(reference.upsample_skip, scores, weights, groups, image)


def head_bytes(batch, n_class=21, image=500, itemsize=4):
    """Bytes the fused head must move at least: every input read once, every stage's output written
    once, the intermediate stages read back once."""
    s1, s2, s3 = fcn8s_stages(image)
    up2 = (s1.in_hw[0] - 1) * 2 + 4
    up4 = (up2 - 1) * 2 + 4
    elems = (s1.in_hw[0] ** 2            # score_fr
             + 2 * up2 * up2              # pool4 window read, stage-1 output written
             + up2 * up2 + 2 * up4 * up4  # stage-1 output read, pool3 window read, stage-2 output written
             + up4 * up4 + image * image)  # stage-2 output read, final output written
    return batch * n_class * elems * itemsize


def timeit(fn, repeat=10, warmup=2):
    """Median wall time of fn() in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(nbytes, device="cpu", repeat=10):
    """Bytes/s of a copy into a fresh tensor (read + write, allocation included, like an op's output)."""
    src = torch.ones(nbytes // 4, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def copy():
        torch.empty_like(src).copy_(src)
        sync()
    return 2 * nbytes / timeit(copy, repeat)


def run(batches=(1, 4), weights=("depthwise", "dense"), dtype=torch.float32, backward=False, compile=True,
        repeat=10, image=500, device="cpu", backends=(None,), out=print):
    """The head table: one row per (batch, weights), a fused column per backend (None: automatic).
    Returns the rows as dicts."""
    rows = []
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    names = [b or "fused" for b in backends]
    out(f"FCN-8s head, {image}x{image}, 21 classes, {dtype}, {'forward+backward' if backward else 'forward'}, "
        f"{device}, {torch.get_num_threads()} threads")
    out(f"{'batch':>5} {'weights':>9} " + " ".join(f"{n + ' ms':>11}" for n in names)
        + f" {'eager ms':>9} {'compiled ms':>11} {'eager/fused':>11} {'compiled/fused':>14} {'max err':>9} {'floor %':>7}")
    for batch in batches:
        # A copy of the head's bytes into a fresh tensor, per batch: allocation behaves as the head's
        # own (on CPU, sizes past glibc's mmap threshold pay page faults on every call).
        itemsize = torch.empty((), dtype=dtype).element_size()
        bw = copy_bandwidth(head_bytes(batch, image=image, itemsize=itemsize) // 2, device)
        for kind in weights:
            scores, ws, groups = head_inputs(batch, image=image, dense=kind == "dense", dtype=dtype,
                                             device=device, requires_grad=backward)
            exact = stock_head([s.detach().cpu().double() for s in scores], [w.cpu().double() for w in ws],
                               groups, image)

            def step(head):
                def f():
                    y = head(scores, ws, groups)
                    if backward:
                        torch.autograd.grad(y, scores, torch.ones_like(y))
                    sync()
                    return y
                return f
            fused = {n: step(lambda s, w, g, b=b: fused_head(s, w, g, image, b)) for n, b in zip(names, backends)}
            t_fused = {n: timeit(f, repeat) for n, f in fused.items()}
            t_eager = timeit(step(lambda s, w, g: stock_head(s, w, g, image)), repeat)
            t_comp = float("nan")
            if compile:
                torch._dynamo.reset()
                compiled_head = torch.compile(lambda s, w, g: stock_head(s, w, g, image))
                t_comp = timeit(step(compiled_head), repeat)
            err = max((f().detach().cpu().double() - exact).abs().max().item() for f in fused.values())
            best = min(t_fused.values())
            floor = head_bytes(batch, image=image, itemsize=scores[0].element_size()) / bw
            row = dict(batch=batch, weights=kind, dtype=str(dtype), backward=backward,
                       fused_ms={n: t * 1e3 for n, t in t_fused.items()}, eager_ms=t_eager * 1e3,
                       compiled_ms=t_comp * 1e3, max_err=err, floor_ms=floor * 1e3, copy_gbps=bw / 1e9)
            rows.append(row)
            out(f"{batch:>5} {kind:>9} " + " ".join(f"{t_fused[n] * 1e3:>11.2f}" for n in names)
                + f" {t_eager * 1e3:>9.2f} {t_comp * 1e3:>11.2f} {t_eager / best:>10.1f}x {t_comp / best:>13.1f}x"
                f" {err:>9.1e} {100 * floor / best:>6.0f}%")
    out("eager/fused, compiled/fused, floor %: against the fastest fused backend; floor %: the head's minimum "
        "bytes (inputs and outputs once) at the bandwidth of a copy of as many bytes, over fused time"
        + ("" if not backward else " (forward bytes only)"))
    return rows
