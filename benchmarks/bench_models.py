"""Whole-model benchmarks of FCN-8s: fused head vs stock composition vs the reference's own form.

Variants (same trunk, same parameters):
  fused      every upsample + skip + crop is one FusedUpsampleSkip call (depthwise, fixed)
  stock      nn.ConvTranspose2d with the same depthwise weights, slice, add  (fused=False)
  reference  the Caffe / torchfcn form: dense 21x21 diagonal nn.ConvTranspose2d, slice, add

pytest-benchmark (groups put the variants side by side):
    FCN_BENCH_FULL=1 pytest benchmarks/bench_models.py      # FCN-8s at 500x500, width 1, batch 1
    pytest benchmarks/bench_models.py --benchmark-disable  # tiny shapes: CI smoke run
Groups: fcn8s-forward, fcn8s-train-step (forward + backward + SGD), and fcn8s-head-forward /
fcn8s-head-train (the head alone on the trunk's scores), per device and size. On CUDA each
benchmark records the peak memory in extra_info.

The report (head share of the model's time, before and after fusion, and whole-model peak memory;
on CPU the peak is measured as the rise of the peak RSS in a fresh process per variant):
    python benchmarks/bench_models.py [--full] [--repeat N]
"""

import argparse
import gc
import json
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from conftest import DEVICES, FULL, rounds
from fcn_kernels import bilinear_kernel
from fcn_kernels.models import FCN8s

WIDTH, SIZE = (1.0, 500) if FULL else (1 / 16, 64)
N_CLASS = 21
VARIANTS = ("fused", "stock", "reference")


def build(variant, device, width=WIDTH, seed=0):
    """FCN-8s in `variant`'s form; every variant gets the same parameters (score layers random, so
    the skips carry signal)."""
    torch.manual_seed(seed)
    m = FCN8s(n_class=N_CLASS, fused=variant == "fused", width=width)
    with torch.no_grad():
        for name in m.score_layer_names():
            getattr(m, name).weight.normal_(0, 0.01)
    if variant == "reference":
        for name in m.upscore_names():
            m.set_upscore_weight(name, bilinear_kernel(N_CLASS, getattr(m, name).kernel_size, 1))
    return m.to(device)


def inputs(device, size=SIZE, batch=1, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    target = torch.randint(0, N_CLASS, (batch, size, size), generator=g)
    return x.to(device), target.to(device)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def forward_fn(model, x):
    model.eval()

    def run():
        with torch.no_grad():
            return model(x)

    return run


def train_step_fn(model, x, target):
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-10, momentum=0.99)

    def run():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
        return loss

    return run


def head_fns(model, x):
    """(head forward, head forward + backward) on the trunk's scores for x."""
    model.eval()
    with torch.no_grad():
        scores = model.scores(x)
    out_size = tuple(x.shape[2:])

    def fwd():
        with torch.no_grad():
            return model.head(*scores, out_size=out_size)

    leaves = [s.detach().requires_grad_() for s in scores]
    grad = torch.randn(x.shape[0], N_CLASS, *out_size, device=x.device)

    def fwd_bwd():
        for t in leaves:
            t.grad = None
        model.head(*leaves, out_size=out_size).backward(grad)

    return fwd, fwd_bwd


# ---- pytest-benchmark ------------------------------------------------------------------------
def _run(benchmark, fn, device):
    def call():
        fn()
        sync(device)

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    if FULL:
        benchmark.pedantic(call, rounds=rounds(3 if device == "cpu" else 20), iterations=1, warmup_rounds=1)
    else:
        benchmark(call)
    if torch.device(device).type == "cuda":
        benchmark.extra_info["peak_mib_above_model"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    benchmark.extra_info.update(width=WIDTH, size=SIZE, batch=1)


def _bench(benchmark, group, variant, device, fn_of):
    """Benchmark fn_of(model, x, target)'s function on `variant` on `device`, in group `group`."""
    benchmark.group = group
    model = build(variant, device)
    x, target = inputs(device)
    _run(benchmark, fn_of(model, x, target), device)


def _bench_test(group, fn_of):
    """A benchmark of fn_of(model, x, target)'s function on every variant and device, in group
    `group`.format(device=...)."""

    @pytest.mark.parametrize("device", DEVICES)
    @pytest.mark.parametrize("variant", VARIANTS)
    def test(benchmark, variant, device):
        _bench(benchmark, group.format(device=device), variant, device, fn_of)

    return test


test_fcn8s_forward = _bench_test(
    f"fcn8s-forward-{{device}}-{SIZE}x{SIZE}-w{WIDTH:g}", lambda model, x, _: forward_fn(model, x)
)
test_fcn8s_train_step = _bench_test(f"fcn8s-train-step-{{device}}-{SIZE}x{SIZE}-w{WIDTH:g}", train_step_fn)
test_fcn8s_head_forward = _bench_test(f"fcn8s-head-forward-{{device}}-{SIZE}x{SIZE}", lambda m, x, _: head_fns(m, x)[0])
test_fcn8s_head_train = _bench_test(f"fcn8s-head-train-{{device}}-{SIZE}x{SIZE}", lambda m, x, _: head_fns(m, x)[1])


# ---- the report: head share and peak memory -------------------------------------------------------
def _median_s(fn, device, repeat):
    fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_child(variant, mode, width, size):
    """In a fresh process: the rise of peak RSS (MiB) over the built model during one forward
    (no_grad, eval) or one training step (forward + backward + SGD with momentum, from no grads)."""
    model = build(variant, "cpu", width)
    x, target = inputs("cpu", size)
    fn = forward_fn(model, x) if mode == "forward" else train_step_fn(model, x, target)
    gc.collect()
    base = _status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    fn()
    return (_status_kib("VmHWM") - base) / 1024


def _peak_cpu(variant, mode, width, size):
    out = subprocess.run(
        [sys.executable, __file__, "--peak-child", variant, mode, str(width), str(size)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _peak_cuda(variant, mode, width, size):
    model = build(variant, "cuda", width)
    x, target = inputs("cuda", size)
    fn = forward_fn(model, x) if mode == "forward" else train_step_fn(model, x, target)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def report(width, size, repeat, devices):
    rows = []
    for device in devices:
        for variant in VARIANTS:
            model = build(variant, device, width)
            x, target = inputs(device, size)
            head_fwd, head_train = head_fns(model, x)
            r = {
                "device": device,
                "variant": variant,
                "model_fwd_ms": 1e3 * _median_s(forward_fn(model, x), device, repeat),
                "head_fwd_ms": 1e3 * _median_s(head_fwd, device, max(repeat, 5)),
                "train_step_ms": 1e3 * _median_s(train_step_fn(model, x, target), device, repeat),
                "head_fwd_bwd_ms": 1e3 * _median_s(head_train, device, max(repeat, 5)),
            }
            r["head_share_fwd"] = r["head_fwd_ms"] / r["model_fwd_ms"]
            r["head_share_train"] = r["head_fwd_bwd_ms"] / r["train_step_ms"]
            del model, head_fwd, head_train
            gc.collect()
            peak = _peak_cuda if device == "cuda" else _peak_cpu
            r["peak_fwd_mib"] = peak(variant, "forward", width, size)
            r["peak_train_mib"] = peak(variant, "train", width, size)
            rows.append(r)
            print(json.dumps(r), flush=True)
    print(
        f"\nFCN-8s, width {width:g}, {size}x{size}, batch 1, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    cols = (
        "device",
        "variant",
        "model_fwd_ms",
        "head_fwd_ms",
        "head_share_fwd",
        "train_step_ms",
        "head_fwd_bwd_ms",
        "head_share_train",
        "peak_fwd_mib",
        "peak_train_mib",
    )
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="width 1, 500x500 (default: width 1/16, 64x64)")
    p.add_argument("--width", type=float)
    p.add_argument("--size", type=int)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    p.add_argument("--peak-child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.peak_child:
        variant, mode, width, size = a.peak_child
        print(_peak_child(variant, mode, float(width), int(size)))
        return
    width = a.width if a.width is not None else (1.0 if a.full else 1 / 16)
    size = a.size if a.size is not None else (500 if a.full else 64)
    devices = DEVICES if a.device == "all" else [a.device]
    report(width, size, a.repeat, devices)


if __name__ == "__main__":
    main()
