"""The shapes and contenders of benchmarks/bench_losses.py (issue 19's "Measure"), and one contender x shape's
peak memory, measured: run as a script in a child process, it prints one JSON line.

    python benchmarks/loss_cases.py --case ade-b2 --contender stock     # {"peak_mb": ..., ...}
    python benchmarks/loss_cases.py --table RESULTS.json                # the markdown table of a results file

Each contender computes the loss and its gradient wrt the coarse scores (the last stage's input; the logits
for "loss-alone"), one step = forward + torch.autograd.grad. Peak memory (CPU): the growth of the process's
resident set over one step, VmHWM after the step minus VmRSS before it, with the high-water mark reset
(/proc/self/clear_refs "5") after the inputs are built and 2 warm-up steps are run (warm-up excluded:
torch.compile's compilation and first-call caches are not counted). glibc's malloc is told to map every
block above 64 KiB on its own (MALLOC_MMAP_THRESHOLD_), so freed tensors leave the resident set and the
baseline holds no cached heap. CUDA: torch.cuda.max_memory_allocated's growth over the same step, in
process (the allocator's own count, exact)."""

import argparse
import json
import os
import re
import subprocess
import sys
from collections import namedtuple

# torch.compile in this process, without inductor's pool of compile workers (read when inductor is first
# imported): on a 2-core machine the pool's processes took the cores while the first shape was timed
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import torch
import torch.nn.functional as F

from fcn_kernels import backends, bilinear_kernel, interpolate_cross_entropy, reference, upsample_cross_entropy
from fcn_kernels.app import bench

FULL = os.environ.get("FCN_BENCH_FULL") == "1"
WARMUP = 2
MMAP_THRESHOLD = 65536  # bytes: glibc maps every larger block alone, and unmaps it when freed

# op: "upsample" (FCN-8s upscore8: depthwise bilinear, stride 8, kernel 16, crop offset 31) or "interpolate"
# (F.interpolate bilinear, align_corners=False); in_hw for "upsample" comes from the FCN-8s trunk's sizes
Case = namedtuple("Case", "name op batch classes in_hw out_hw")


def _voc(batch, image):
    return Case(f"voc-b{batch}", "upsample", batch, 21, bench.fcn8s_stages(image)[2].in_hw, (image, image))


CASES = (
    [_voc(1, 500), _voc(4, 500), Case("ade-b2", "interpolate", 2, 150, (64, 64), (512, 512))]
    + [Case("city-b1", "interpolate", 1, 19, (128, 256), (1024, 2048))]
    if FULL
    # tiny stand-ins named as the full shapes gpu_check.sh selects (its LOSS_SELECT), so smoke and GPU select alike
    else [_voc(4, 64), Case("ade-b2", "interpolate", 2, 150, (8, 8), (64, 64))]
)
CASE = {c.name: c for c in CASES}
# the fused contenders of each device, first the one the ratios are taken against
FUSED = {"cpu": ["fused"], "cuda": ["cuda", "triton"]}
# torch.compile on the full shapes only (its compiles would make the smoke run minutes long)
CONTENDERS = {
    "cpu": FUSED["cpu"] + ["stock"] + ["compiled"] * FULL + ["loss-alone"],
    "cuda": FUSED["cuda"] + ["stock", "loss-alone"],
}


def describe(case):
    if case.op == "upsample":
        return f"FCN-8s upscore8, {case.classes} classes, {case.in_hw} -> {case.out_hw}, batch {case.batch}"
    return f"bilinear 8x, {case.classes} classes, {case.in_hw} -> {case.out_hw}, batch {case.batch}"


def unavailable(case, contender, device):
    """Why this contender cannot run here (a fused backend not built, or not for this device), or None."""
    if contender not in FUSED[device.type]:
        return None
    backend = "cpu" if contender == "fused" else contender
    op = f"{case.op}_cross_entropy"
    if not (backends._built(backend, op) and backends._runs_on(backend, device)):
        return f"no {backend} kernels for {op} on {device.type} in this build"
    return None


def step(case, contender, device):
    """A callable running one forward + backward of `contender` on `case`'s inputs (seeded), built here."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(case.batch, case.classes, *case.in_hw, generator=g).to(device).requires_grad_()
    target = torch.randint(0, case.classes, (case.batch, *case.out_hw), generator=g).to(device)
    if case.op == "upsample":
        st = bench.fcn8s_stages(case.out_hw[0])[2]
        w = bilinear_kernel(case.classes, st.kernel, case.classes, device=device)
        kw = dict(stride=st.stride, groups=case.classes, out_offset=st.out_offset)
        fused, stock = upsample_cross_entropy, reference.upsample_cross_entropy
        args = (x, target, w)
    else:
        kw = {}
        fused, stock = interpolate_cross_entropy, reference.interpolate_cross_entropy
        args = (x, target)
    inputs = x
    if contender in FUSED[device.type]:
        fn = lambda: fused(*args, **kw, backend="cpu" if contender == "fused" else contender)  # noqa: E731
    elif contender == "stock":
        fn = lambda: stock(*args, **kw)  # noqa: E731
    elif contender == "compiled":
        torch._dynamo.reset()
        compiled = torch.compile(stock)
        fn = lambda: compiled(*args, **kw)  # noqa: E731
    elif contender == "loss-alone":
        with torch.no_grad():
            if case.op == "upsample":
                logits = reference.upsample_skip(x, w, out_size=case.out_hw, **kw)
            else:
                logits = F.interpolate(x, size=case.out_hw, mode="bilinear")
        inputs = logits.requires_grad_()
        fn = lambda: F.cross_entropy(logits, target)  # noqa: E731
    else:
        raise ValueError(f"unknown contender {contender!r}")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run():
        torch.autograd.grad(fn(), inputs)
        sync()

    return run


def _status_kb(*keys):
    with open("/proc/self/status") as f:
        text = f.read()
    return [int(re.search(rf"^{k}:\s+(\d+) kB", text, re.M)[1]) for k in keys]


def peak_here(case, contender, device):
    """{peak_mb, baseline_mb}: this process's memory growth over one step (module docstring)."""
    run = step(case, contender, device)
    for _ in range(WARMUP):
        run()
    if device.type == "cuda":
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        return dict(peak_mb=(torch.cuda.max_memory_allocated() - base) / 2**20, baseline_mb=base / 2**20)
    (base,) = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    run()
    (hwm,) = _status_kb("VmHWM")
    return dict(peak_mb=(hwm - base) / 1024, baseline_mb=base / 1024)


def peak(case, contender, device):
    """peak_here's result: CPU in a fresh child process (this script), CUDA in this one."""
    if device.type == "cuda":
        return peak_here(case, contender, device)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    cmd = [sys.executable, os.path.abspath(__file__), "--case", case.name, "--contender", contender]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def table(results):
    """The markdown table of a results file (bench_losses.py's JSON): wall and CPU ms, each with its ratio
    to the first fused contender's, peak MB and its ratio to stock's, per case and contender."""
    lines = [
        "| case | shape | contender | ms (median) | / fused | CPU ms | / fused | peak MB | peak / stock |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def num(v, fmt, unit=""):
        return "-" if v is None else format(v, fmt) + unit

    for row in results["rows"]:
        cells = [row["case"], row["shape"], row["contender"], num(row["ms"], ".1f")]
        cells += [num(row["ratio_vs_fused"], ".2f", "x"), num(row.get("cpu_ms"), ".1f")]
        cells += [num(row.get("cpu_ratio_vs_fused"), ".2f", "x"), num(row.get("peak_mb"), ".1f")]
        lines.append("| " + " | ".join(cells + [num(row.get("peak_vs_stock"), ".2f")]) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", choices=sorted(CASE))
    p.add_argument("--contender")
    p.add_argument("--device", default="cpu")
    p.add_argument("--table", metavar="RESULTS_JSON")
    a = p.parse_args(argv)
    if a.table:
        with open(a.table) as f:
            print(table(json.load(f)))
        return
    if not (a.case and a.contender):
        p.error("--case and --contender, or --table")
    print(json.dumps(peak_here(CASE[a.case], a.contender, torch.device(a.device))))


if __name__ == "__main__":
    main()
