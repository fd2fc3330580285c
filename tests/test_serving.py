"""Serving as users run it: one InferenceModel called from several threads, many calls in one process, and
the command line's --help."""

import gc
import os
import threading
import tracemalloc
import types

import pytest
import torch

import fcn_kernels
from fcn_kernels.models import FCN8s, optimize_for_inference
from fcn_kernels.models.inference import _freezing, _FreezingOn
from test_predict import random_model  # labels that vary over the image

needs_cpu_kernels = pytest.mark.skipif(
    "cpu" not in fcn_kernels.available_backends(), reason="fcn_kernels._C was not built"
)


def predict_in_threads(fast, inputs, n_threads=4):
    """fast.predict of every input, the inputs dealt round to n_threads threads that start at once."""
    start, results, errors = threading.Barrier(n_threads), {}, []

    def work(t):
        try:
            start.wait()
            for i in range(t, len(inputs), n_threads):
                results[i] = fast.predict(inputs[i])
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return [results[i] for i in range(len(inputs))]


@needs_cpu_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_threads_give_the_serial_labels(seed, dtype):
    inputs = [torch.randn(1 + i % 2, 3, 30 + 7 * (i % 3), 41) for i in range(12)]
    fast = optimize_for_inference(random_model(FCN8s, True, inputs[0]), dtype=dtype, compile=False)
    concurrent = predict_in_threads(fast, inputs)
    serial = [fast.predict(x) for x in inputs]
    for got, want in zip(concurrent, serial):
        assert torch.equal(got, want)
    assert any(s.unique().numel() > 1 for s in serial)  # labels the test can tell apart


@needs_cpu_kernels
@pytest.mark.slow  # one compilation of the FCN: 20 to 60 s on 2 cores
def test_compiled_threads_give_the_serial_labels(seed):
    """The first calls compile (Dynamo traces one at a time, the others wait), the rest run at once; the
    freezing flag is as it was afterwards."""
    import torch._inductor.config as config

    before = config.freezing
    inputs = [torch.randn(1, 3, 37, 29) for _ in range(8)]
    fast = optimize_for_inference(random_model(FCN8s, True, torch.cat(inputs)), compile=True)
    concurrent = predict_in_threads(fast, inputs)
    serial = [fast.predict(x) for x in inputs]
    for got, want in zip(concurrent, serial):
        assert torch.equal(got, want)
    assert any(s.unique().numel() > 1 for s in serial)
    assert config.freezing == before


def test_freezing_on_across_threads_of_a_process_wide_config():
    """Where the config is one for the process (torch before 2.12), freezing is on while any call is inside
    and back to the user's value once the last one leaves, whatever the order threads leave in: a
    per-call patch restored the value of the moment it was entered (a thread leaving first turned freezing
    off under another's compilation; the last one out could leave it on)."""
    config = types.SimpleNamespace(freezing=False)
    freezing = _FreezingOn(config, per_thread=False)
    entered, leave_first, left_first = threading.Event(), threading.Event(), threading.Event()

    def first():
        with freezing:
            entered.set()
            leave_first.wait(10)
        left_first.set()

    t = threading.Thread(target=first)
    t.start()
    assert entered.wait(10)
    with freezing:
        assert config.freezing is True
        leave_first.set()
        assert left_first.wait(10)
        assert config.freezing is True  # the first thread left; this one is still inside
    t.join()
    assert config.freezing is False
    config.freezing = True  # a user's own setting is kept too
    with freezing:
        pass
    assert config.freezing is True


def test_freezing_on_per_thread_config():
    """Where config values are per thread (torch 2.12 on), a call sets and restores its own thread's value
    only, nested or not."""
    import torch._inductor.config as config

    freezing = _freezing()
    if not freezing._per_thread:
        pytest.skip(f"torch {torch.__version__}: the inductor config is one for the process")
    seen = {}

    def other():
        seen["other"] = config.freezing

    before = config.freezing
    with freezing:
        with freezing:
            t = threading.Thread(target=other)
            t.start()
            t.join()
            seen["inside"] = config.freezing
        seen["after inner"] = config.freezing
    assert seen == {"other": before, "inside": True, "after inner": True}
    assert config.freezing == before


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@needs_cpu_kernels
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS read from /proc (Linux)")
def test_predict_holds_the_memory_flat(seed):
    """1,000 predict calls after a warm-up leave the resident memory within 5% of where it was. One CPU
    thread: OpenMP's threads wait for each other on a loaded 2-core machine (~10x slower), and the memory,
    not the time, is what is measured."""
    fast = optimize_for_inference(FCN8s(n_class=3, width=1 / 64).eval(), compile=False)
    x = torch.randn(1, 3, 12, 12)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(50):
            fast.predict(x)
        gc.collect()
        start, peak = _rss(), 0
        for i in range(1000):
            fast.predict(x)
            if i % 50 == 49:
                peak = max(peak, _rss())
    finally:
        torch.set_num_threads(threads)
    assert peak <= 1.05 * start, f"RSS {start / 2**20:.1f} MiB after the warm-up, up to {peak / 2**20:.1f} MiB"


@pytest.mark.slow  # two compilations of a one-layer model: 20 to 60 s on 2 cores
def test_compiled_calls_keep_no_memory_and_freeze(seed):
    """A compiled model's calls keep nothing alive: 1,000 predict calls hold Python's traced memory within
    64 KiB (a config.patch a call kept about 300 bytes a call alive: a ContextVar in the thread). Freezing
    still takes effect: the compiled graph holds the weights as constants, so changing the module's weight
    afterwards does not change its output."""
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1)).eval()
    fast = optimize_for_inference(m, compile=True)
    x = torch.randn(1, 3, 8, 8)
    before = fast(x)
    with torch.no_grad():
        fast.model[0].weight.mul_(2)
    assert torch.equal(fast(x), before)  # frozen
    for _ in range(20):
        fast.predict(x)
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            fast.predict(x)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes still held after 1,000 calls"


def test_help_shows_no_none_default(capsys):
    """No command's --help writes "(default: None)" (required options, options without a default); the
    defaults there are still written."""
    from fcn_kernels.app.cli import COMMANDS, main

    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([cmd.NAME, "--help"])
        assert done.value.code == 0
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
        assert "default: None" not in text, cmd.NAME
    shown = {
        "predict": [
            "--batch-size BATCH_SIZE images per forward pass",
            "(default: 1)",
            "--checkpoint CHECKPOINT an fcn-kernels training checkpoint (checkpoint.pt) --out",
        ],
        "train": ["(default: 0.0001)", "(default: 4 on synthetic, 21 on VOC;"],
        "export": ["an AOTInductor package (default: onnx)", "(default: fcn_kernels.export.OPSET)"],
    }
    for name, parts in shown.items():
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for part in parts:
            assert part in text, (name, part)
