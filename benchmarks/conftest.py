"""Benchmarks: `pytest benchmarks` (otherwise small shapes, which CI runs once with --benchmark-disable as a
smoke test). Compare side by side with `--benchmark-group-by=group`.

The switches, read here once for every benchmark file:
  FCN_BENCH_FULL=1          the issues' full shapes (else small ones)
  FCN_BENCH_DEVICES=cpu,cuda  the devices to benchmark (default: cpu, and cuda when a GPU is present);
                            the bench_gpu_* files run only when cuda is among them
  FCN_BENCH_ROUNDS=N        every benchmark times exactly N rounds (else pytest-benchmark's own choice,
                            and each file's default for its fixed-round benchmarks)
  FCN_BENCH_JSONL=PATH      also every benchmark's result as one JSON line, written (flushed) as it ends:
                            a run cut short keeps them (pytest-benchmark's --benchmark-json is written at
                            the end only)
"""

import json
import os

import pytest
import torch

FULL = os.environ.get("FCN_BENCH_FULL") == "1"
_devices = os.environ.get("FCN_BENCH_DEVICES")
DEVICES = (
    [d.strip() for d in _devices.split(",") if d.strip()]
    if _devices
    else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
)
ROUNDS = int(os.environ["FCN_BENCH_ROUNDS"]) if os.environ.get("FCN_BENCH_ROUNDS") else None

for _d in DEVICES:
    if _d not in ("cpu", "cuda"):
        raise pytest.UsageError(f"FCN_BENCH_DEVICES={_devices!r}: {_d!r} is neither cpu nor cuda")
    if _d == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"FCN_BENCH_DEVICES={_devices!r}: no CUDA GPU is available here")
if ROUNDS is not None and ROUNDS < 1:
    raise pytest.UsageError(f"FCN_BENCH_ROUNDS must be at least 1, got {ROUNDS}")
JSONL = os.environ.get("FCN_BENCH_JSONL") or None


def rounds(default):
    """The rounds of a fixed-round (pedantic) benchmark: FCN_BENCH_ROUNDS, else `default`."""
    return ROUNDS or default


def pytest_configure(config):
    if JSONL:
        open(JSONL, "w").close()  # this run's lines only
    if ROUNDS is not None and hasattr(config.option, "benchmark_min_rounds"):
        config.option.benchmark_min_rounds = ROUNDS
        config.option.benchmark_max_time = 0.0  # then exactly min_rounds rounds


def step(fn, inputs, backward, sync):
    """One timed call: fn(), then (backward) the gradient of its output wrt `inputs`, then sync()."""

    def run():
        y = fn()
        if backward:
            torch.autograd.grad(y, inputs, torch.ones_like(y))
        sync()

    return run


@pytest.fixture
def sync():
    return torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)


@pytest.fixture(autouse=True)
def _result_line(request):
    """FCN_BENCH_JSONL: after each benchmark, its group, name, statistics (seconds; None where
    --benchmark-disable ran it once untimed) and extra_info as one JSON line."""
    yield
    fixture = request.node.funcargs.get("benchmark") if JSONL else None
    if fixture is None or getattr(fixture, "_mode", None) is None:  # skipped before it ran
        return
    stats = getattr(getattr(fixture, "stats", None), "stats", None)
    row = dict(
        group=fixture.group,
        name=fixture.name,
        test=request.node.nodeid,
        extra_info=fixture.extra_info,
        **{
            k: getattr(stats, k) if stats is not None else None
            for k in ("median", "iqr", "min", "max", "mean", "rounds")
        },
    )
    with open(JSONL, "a") as f:  # closed (so flushed) line by line
        f.write(json.dumps(row) + "\n")
