"""upsample_skip vs the stock composition (conv_transpose2d + slice + add) and torch.compile of it, at
the FCN-8s head stages (VOC 500x500, 21 classes) and for the whole head; forward and forward+backward;
depthwise bilinear (FCN's fixed upsampling) and dense 21x21 weights. extra_info holds the bytes moved
and the copy-bandwidth floor measured in the same run."""

import statistics
from functools import partial

import pytest
import torch

from conftest import DEVICES, FULL, step
from fcn_kernels import bilinear_kernel, reference, upsample_argmax, upsample_skip
from fcn_kernels.app import bench
from fcn_kernels.models import FCN8s, FCN16s, FCN32s

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


# The head's floor (issue 20): `python benchmarks/bench_upsample_skip.py [--rounds N] [--stage S]` prints, for
# upscore8 (or FCN-16s's upscore16, FCN-32s's upscore) at 500x500 (batch 1 and 4, 1 and 2 threads, default malloc
# and malloc keeping memory), the median over interleaved rounds of the per-round ratios upsample_skip / floor and
# upsample_argmax / upsample_skip, the floor being torch.empty(out_shape).fill_(1). upsample_argmax's time depends
# on the scores (its sure labels): on noise (torch.randn, none sure: its worst case) and on bench.region_scores (a
# segmentation's: most sure).
# The malloc setting must be in place before the process starts, so each one runs in a child process.
KEEP_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "8589934592"}


RATIOS = ("skip / floor", "argmax / skip", "argmax regions / skip")

# Calls per contender per round. With malloc keeping memory, glibc hands each 21 MB output one of two blocks,
# alternately, and with one call a round the floor got one block and upsample_skip the other in every round
# (their data_ptr()s, 2026-12-06): each ratio then compared two different pieces of memory, whose speeds
# differ by up to a tenth (fill_ into two reused buffers, alternately, in 6 processes: 0.91x-0.99x). An even
# count gives every contender both blocks, each after the same writes.
CALLS = 4


# The last stage of each FCN: upscore8 (FCN-8s), upscore16 (FCN-16s), upscore32 (FCN-32s's `upscore`).
FINAL_STAGES = {"upscore8": FCN8s, "upscore16": FCN16s, "upscore32": FCN32s}


def floor_ratios(batch, threads, rounds, calls=CALLS, stage="upscore8"):
    """{name: median ms, ratio: median per-round ratio, ratio + " quartiles": its rounds' (first, third)
    quartiles} for `stage` (FINAL_STAGES) at 500x500, float32; a contender's time in a round is the mean of
    `calls` calls back to back."""
    import time

    torch.set_num_threads(threads)
    st = bench.fcn_stages(FINAL_STAGES[stage], 500)[-1]
    x = torch.randn(batch, 21, *st.in_hw, generator=torch.Generator().manual_seed(0))
    regions = bench.region_scores(batch, 21, st.in_hw, generator=torch.Generator().manual_seed(0))
    w = bilinear_kernel(21, st.kernel, 21)
    kw = dict(stride=st.stride, groups=21, out_offset=st.out_offset, out_size=st.out_size)
    shape = (batch, 21, *st.out_size)
    fns = {
        "floor": lambda: torch.empty(shape).fill_(1),
        "skip": lambda: upsample_skip(x, w, **kw),
        "argmax": lambda: upsample_argmax(x, w, **kw),
        "argmax regions": lambda: upsample_argmax(regions, w, **kw),
    }
    times = {name: [] for name in fns}
    for r in range(rounds + 3):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            if r >= 3:  # warm-up rounds
                times[name].append((time.perf_counter() - t0) / calls)
    med = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    ratios = {"skip / floor": [s / f for s, f in zip(times["skip"], times["floor"])]}
    for name in ("argmax", "argmax regions"):
        ratios[f"{name} / skip"] = [a / s for a, s in zip(times[name], times["skip"])]
    for name, r in ratios.items():
        # the rounds' spread too: on a shared machine a ratio's median moves between runs of the same build
        # (docs/performance.md, session 17), so a change inside the quartiles is not a measured one
        med[name] = statistics.median(r)
        med[f"{name} quartiles"] = _quartiles(r)
    return med


def _quartiles(values):
    """(first, third) quartiles of values (at least one), within their range: the default (exclusive) method
    extrapolates past it for few values (two rounds 1.0 and 6.0: -0.25 and 7.25)."""
    if len(values) < 2:
        return (values[0], values[0])
    q = statistics.quantiles(values, n=4, method="inclusive")
    return (q[0], q[2])


@pytest.mark.parametrize("stage", FINAL_STAGES)
def test_floor_ratios(stage):
    """The floor script's numbers, as a smoke test (two rounds): every ratio with its quartiles around it."""
    threads = torch.get_num_threads()
    try:
        r = floor_ratios(1, 1, rounds=2, stage=stage)
    finally:
        torch.set_num_threads(threads)
    for name in RATIOS:
        lo, hi = r[f"{name} quartiles"]
        assert 0 < lo <= r[name] <= hi, (name, r)
    assert _quartiles([3.0]) == (3.0, 3.0)
    assert _quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 4.0)
    assert _quartiles([1.0, 6.0]) == (2.25, 4.75)


def _main():
    import argparse
    import json
    import os
    import subprocess
    import sys

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--calls", type=int, default=CALLS, help="calls per contender per round, back to back")
    p.add_argument("--stage", choices=FINAL_STAGES, default="upscore8", help="the FCN's last stage to time")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    cases = [(b, t) for b in (1, 4) for t in (1, 2)]
    if args.child:
        for b, t in cases:
            print(
                json.dumps({"batch": b, "threads": t, **floor_ratios(b, t, args.rounds, args.calls, args.stage)}),
                flush=True,
            )
        return
    print(
        f"{args.stage} 500x500 float32, {args.rounds} interleaved rounds of {args.calls} calls each, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print("ratios: the median of the per-round ratios (its rounds' quartiles)")
    print(
        "| malloc | batch | threads | floor ms | upsample_skip ms | argmax ms (noise) | argmax ms (regions) "
        "| skip / floor | argmax / skip (noise) | argmax / skip (regions) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode, env in (("default", {}), ("keeping memory", KEEP_MEMORY)):
        cmd = [sys.executable, __file__, "--child", "--rounds", str(args.rounds), "--calls", str(args.calls)]
        cmd += ["--stage", args.stage]
        out = subprocess.run(cmd, env={**os.environ, **env}, check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            r = json.loads(line)
            ratio = {k: f"{r[k]:.2f}x ({r[k + ' quartiles'][0]:.2f}-{r[k + ' quartiles'][1]:.2f})" for k in RATIOS}
            print(
                f"| {mode} | {r['batch']} | {r['threads']} | {r['floor']:.2f} | {r['skip']:.2f} | {r['argmax']:.2f} "
                f"| {r['argmax regions']:.2f} | {' | '.join(ratio[k] for k in RATIOS)} |"
            )


if __name__ == "__main__":
    _main()
