"""The fused losses (issue 19): forward + backward of the last stage plus the loss, from the coarse scores,
fused (upsample_cross_entropy / interpolate_cross_entropy) against the stock composition (conv_transpose2d or
F.interpolate, crop, pixelwise_cross_entropy), torch.compile of it, and F.cross_entropy on precomputed
logits (the loss alone, for scale). Shapes, contenders and the peak-memory method: benchmarks/loss_cases.py.

Time: per shape one interleaved run (each round runs every contender once, so load on this shared machine hits
all alike; medians of the rounds after a warm-up round), ratios against the fused contender side by side, in
wall time and in the process's CPU time (which other jobs on the machine disturb less);
then each contender's peak memory, measured in a child process (CPU). One command, under 10 minutes on 2 cores:
    FCN_BENCH_FULL=1 pytest benchmarks/bench_losses.py -s     # writes benchmarks/results/<date>-<cpu>-losses.json
    pytest benchmarks/bench_losses.py --benchmark-disable     # tiny shapes, one round: CI's smoke run
    python benchmarks/loss_cases.py --table RESULTS.json      # its markdown table (docs/performance.md)
FCN_BENCH_LOSSES_JSON=PATH writes the results there instead (also without FCN_BENCH_FULL).
"""

import datetime
import json
import os
import platform
import re
import statistics
import sys
import time

import pytest
import torch

import loss_cases
from conftest import DEVICES, FULL, rounds
from fcn_kernels._io import write_json

ROUNDS = rounds(5 if FULL else 1)
RESULTS = {}  # device: the results file's object, rewritten after every case


def machine(device):
    """e.g. "cpu-amd-epyc-2core", or the GPU's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device).replace(" ", "_")
    name = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            name = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)[1]
    except (OSError, TypeError):
        pass
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower().replace("(r)", "").replace("(tm)", "")).strip("-")
    return f"cpu-{slug}-{os.cpu_count()}core"


def results_path(device):
    path = os.environ.get("FCN_BENCH_LOSSES_JSON")
    if path or not FULL:
        return path
    day = datetime.date.today().isoformat()
    return os.path.join(os.path.dirname(__file__), "results", f"{day}-{machine(device)}-losses.json")


def results(device):
    if device.type not in RESULTS:
        RESULTS[device.type] = dict(
            schema="fcn-kernels/bench-losses/1",
            date=datetime.date.today().isoformat(),
            machine=machine(device),
            device=device.type,
            torch=torch.__version__,
            threads=torch.get_num_threads(),
            command=" ".join(
                [f"{k}={os.environ[k]}" for k in ("FCN_BENCH_FULL", "FCN_BENCH_ROUNDS") if os.environ.get(k)]
                + ["pytest"]
                + sys.argv[1:]
            ),
            method=dict(
                time=f"median of {ROUNDS} interleaved rounds after 1 warm-up round, ms (wall; cpu_ms: the "
                "process's CPU time, every thread's); one step = the loss and its gradient wrt the coarse scores "
                "(the logits for loss-alone); ratio_vs_fused = ms / the first fused contender's ms (> 1: fused "
                "faster); float32, mean reduction, random labels, none ignored",
                memory=loss_cases.__doc__.split("\n\n")[2].replace("\n", " "),
            ),
            rows=[],
            skipped=[],
        )
    return RESULTS[device.type]


def interleaved(runs, times, cpu):
    """times, cpu: {contender: median wall seconds, median process CPU seconds (every thread's; less
    sensitive than wall time to other jobs on a shared machine)} of ROUNDS rounds, each running every
    contender once, after one warm-up round."""
    for run in runs.values():
        run()
    samples = {c: [] for c in runs}
    for _ in range(ROUNDS):
        for c, run in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            samples[c].append((time.perf_counter() - t0, time.process_time() - c0))
    for c, s in samples.items():
        times[c] = statistics.median(t for t, _ in s)
        cpu[c] = statistics.median(t for _, t in s)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", loss_cases.CASES, ids=[c.name for c in loss_cases.CASES])
def test_loss(benchmark, case, device):
    device = torch.device(device)
    benchmark.group = f"losses {case.name} {device.type}"
    res = results(device)
    runs, skipped = {}, {}
    for contender in loss_cases.CONTENDERS[device.type]:
        why = loss_cases.unavailable(case, contender, device)
        if why:
            skipped[contender] = why
        else:
            runs[contender] = loss_cases.step(case, contender, device)
    load = [os.getloadavg()[0]]
    times, cpu = {}, {}
    benchmark.pedantic(lambda: interleaved(runs, times, cpu), rounds=1, iterations=1)
    load.append(os.getloadavg()[0])
    fused = next((c for c in loss_cases.FUSED[device.type] if c in times), None)  # None: no fused kernels here
    peaks = {c: loss_cases.peak(case, c, device)["peak_mb"] for c in times}
    rows = [
        dict(
            case=case.name,
            shape=loss_cases.describe(case),
            op=f"{case.op}_cross_entropy",
            batch=case.batch,
            classes=case.classes,
            in_hw=list(case.in_hw),
            out_hw=list(case.out_hw),
            contender=c,
            ms=t * 1e3,
            ratio_vs_fused=t / times[fused] if fused else None,
            cpu_ms=cpu[c] * 1e3,
            cpu_ratio_vs_fused=cpu[c] / cpu[fused] if fused else None,
            peak_mb=peaks[c],
            peak_vs_stock=peaks[c] / peaks["stock"] if peaks.get("stock", 0) > 0 else None,
            loadavg_1min=load,
        )
        for c, t in times.items()
    ]
    benchmark.extra_info.update(ms={r["contender"]: r["ms"] for r in rows}, peak_mb=peaks, skipped=skipped)
    res["rows"] = [r for r in res["rows"] if r["case"] != case.name] + rows
    res["skipped"] += [dict(case=case.name, contender=c, why=w) for c, w in skipped.items()]
    path = results_path(device)
    if path:
        write_json(path, res)
    print(f"\n{loss_cases.table(dict(rows=rows))}\nload (1 min) {load}; skipped {skipped}")
    assert all(t > 0 for t in times.values()) and all(r["peak_mb"] is not None for r in rows), json.dumps(rows)
