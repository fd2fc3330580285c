"""The peers' table (issues 13, 20): the FCN-8s head and the whole FCN-8s on CPU, side by side in one run with
the rounds interleaved (fcn_kernels.app.peers): stock eager, torch.compile(stock), fused eager, the torch
engine fp32 / bf16, the openvino engine f32 / bf16 and the onnxruntime engine (whole model), ONNX Runtime,
OpenVINO f32 / bf16, and the head's fresh-memory floor. glibc keeps freed memory (optimize_for_inference sets
it for the process; FCN_KERNELS_KEEP_MEMORY=0 for glibc's default).

pytest-benchmark times one interleaved run per (part, batch, image); every path's median is in extra_info
(ms), and a missing peer package is listed there with the reason it was skipped:
    FCN_BENCH_FULL=1 pytest benchmarks/bench_peers.py -s   # width 1; batch 1 at 256 and 500, batch 4 at 256
    pytest benchmarks/bench_peers.py --benchmark-disable   # one tiny case, uncompiled: CI's smoke run
The same table, printed: `fcn-kernels bench --peers` (see `--help`).
"""

import pytest
import torch

from conftest import FULL
from fcn_kernels.app import peers

CASES = peers.CASES if FULL else peers.SMOKE_CASES
WIDTH = 1.0 if FULL else 1 / 16
ROUNDS = 7 if FULL else 1


@pytest.mark.parametrize("batch,image", CASES, ids=[f"b{b}-{i}" for b, i in CASES])
@pytest.mark.parametrize("part", ["head", "model"])
def test_peers(benchmark, part, batch, image, tmp_path):
    benchmark.group = f"peers-{part}-b{batch}-{image}-cpu"
    if part == "head":
        paths, inputs = peers.head_paths(batch, image, str(tmp_path), compile=FULL)
    else:
        paths, inputs = peers.model_paths(batch, image, WIDTH, str(tmp_path), compile=FULL)
    runnable = {n: f for n, f in paths.items() if callable(f)}
    times = {}
    benchmark.pedantic(
        lambda: times.update(peers.interleaved(runnable, inputs, ROUNDS, warmup=int(FULL))), rounds=1, iterations=1
    )
    errors = peers.relative_errors(runnable, inputs)
    benchmark.extra_info.update(
        ms={n: t * 1e3 for n, t in times.items()},
        rel_err=errors,
        width=WIDTH,
        skipped={n: f for n, f in paths.items() if not callable(f)},
        threads=torch.get_num_threads(),
    )
    # every path computes the same scores (bf16 ones within bf16's rounding)
    bad = {n: e for n, e in errors.items() if e > (5e-2 if "bf16" in n else 1e-4)}
    assert not bad, bad
