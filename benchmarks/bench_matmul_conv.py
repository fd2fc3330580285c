"""FCN's fc6 (7x7, 512 -> 4096 at width 1) as oneDNN's convolution against im2col + matmul
(fcn_kernels.models.matmul_conv), both compiled with Inductor freezing as optimize_for_inference's torch
engine runs them, on the CPU, float32 and bf16 autocast: the data of MatmulConv2d's rule (MATMUL_RULE).

pytest-benchmark, the two side by side per shape (FCN_BENCH_FULL=1: width 1 at the pool5 sizes of
FCN-8s's inputs; else width 1/16, a CI smoke run):
    FCN_BENCH_FULL=1 pytest benchmarks/bench_matmul_conv.py --benchmark-group-by=group

The rule's table (interleaved rounds in one process, medians, JSON; width 1, then 1/2, 1/4 and 1/16):
    python benchmarks/bench_matmul_conv.py [--rounds 9] [--json PATH]
"""

import argparse
import contextlib
import json
import statistics
import time

import pytest
import torch
from torch import nn

from conftest import FULL
from fcn_kernels.app.peers import cpu_name
from fcn_kernels.models.matmul_conv import MATMUL_RULE, MatmulConv2d

# (batch, pool5 size): fc6's output rows are batch * (size - 6)^2. Width 1: FCN-8s at batch 1 on 256 x 256
# (15) and 500 x 500 (22) images, batch 4 on 256 x 256, and sizes between and beyond.
SHAPES_FULL = [(1, 7), (1, 10), (1, 11), (1, 13), (1, 15), (1, 18), (2, 15), (4, 13), (1, 22), (4, 15), (1, 26)]
SHAPES_FULL += [(2, 22), (1, 30), (1, 38), (4, 22)]
SHAPES = SHAPES_FULL if FULL else [(1, 9), (2, 12)]
CHANNELS = (512, 4096) if FULL else (32, 256)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# fc6 at FCN widths 1/2, 1/4 and 1/16 (the rule's least weight elements), at FCN-8s's three peer shapes
NARROWER = [(256, 2048), (128, 1024), (32, 256)]
NARROWER_SHAPES = [(1, 15), (1, 22), (4, 15)]


def paths(dtype, c_in=CHANNELS[0], c_out=CHANNELS[1]):
    """{name: compiled fn(x)}: fc6 as the convolution and as the product, the same parameters."""
    import torch._inductor.config as inductor_config

    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, 7).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    saved = dict(MATMUL_RULE)
    always = (1, 2**62, 0)  # the product at every shape, for the data
    MATMUL_RULE.update({torch.float32: always, torch.bfloat16: always})
    matmul = MatmulConv2d.from_conv(conv)
    autocast = torch.autocast("cpu", dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()

    def compiled(module):
        fn = torch.compile(lambda x: module(x), dynamic=False)

        def run(x):
            with torch.no_grad(), autocast, inductor_config.patch(freezing=True):
                return fn(x)

        return run

    def restore():
        MATMUL_RULE.clear()
        MATMUL_RULE.update(saved)

    return {"conv": compiled(conv), "matmul": compiled(matmul)}, restore


def _input(batch, size, c_in=CHANNELS[0]):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, c_in, size, size, generator=g).contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"b{s[0]}-{s[1]}x{s[1]}")
@pytest.mark.parametrize("impl", ["conv", "matmul"])
def test_fc6(benchmark, impl, shape, dtype):
    batch, size = shape
    fns, restore = paths(DTYPES[dtype])
    try:
        x = _input(batch, size)
        benchmark.group = f"fc6 {CHANNELS[0]}->{CHANNELS[1]} 7x7 b{batch} {size}x{size} {dtype} cpu"
        benchmark.extra_info["rows"] = batch * (size - 6) ** 2
        fns[impl](x)  # compile outside the timing
        benchmark(fns[impl], x)
    finally:
        restore()
        torch._dynamo.reset()


def table(rounds, shapes=SHAPES_FULL, channels=CHANNELS):
    rows = []
    for name, dtype in DTYPES.items():
        fns, restore = paths(dtype, *channels)
        try:
            for batch, size in shapes:
                x = _input(batch, size, channels[0])
                for fn in fns.values():
                    fn(x), fn(x)
                times = {k: [] for k in fns}
                for _ in range(rounds):
                    for k, fn in fns.items():
                        t = time.perf_counter()
                        fn(x)
                        times[k].append(time.perf_counter() - t)
                conv, matmul = (statistics.median(times[k]) * 1e3 for k in ("conv", "matmul"))
                row = dict(dtype=name, channels=list(channels), batch=batch, size=size, rows=batch * (size - 6) ** 2)
                row.update(conv_ms=conv, matmul_ms=matmul, matmul_over_conv=matmul / conv)
                rows.append(row)
                print(
                    f"{name} {channels[0]}->{channels[1]} batch {batch} pool5 {size}x{size} rows {row['rows']}: "
                    f"conv {conv:.2f} ms, matmul {matmul:.2f} ms, matmul / conv {matmul / conv:.2f}",
                    flush=True,
                )
                torch._dynamo.reset()
        finally:
            restore()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", help="write the table here")
    args = parser.parse_args()
    print(cpu_name(), f"{torch.get_num_threads()} threads", flush=True)
    rows = table(args.rounds, SHAPES_FULL, (512, 4096))
    for channels in NARROWER:
        rows += table(args.rounds, NARROWER_SHAPES, channels)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "threads": torch.get_num_threads(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
