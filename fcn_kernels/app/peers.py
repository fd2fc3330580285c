"""The peers' table (issues 13, 20): the FCN-8s head and the whole FCN-8s on CPU, every path a user could
pick, timed side by side in one run with the rounds interleaved (each round runs every path once, so a load
spike on this shared machine hits all of them alike; the table gives each path's median).

Paths: stock eager, torch.compile(stock), fused eager, the torch engine (optimize_for_inference) fp32 and
bf16; for the whole model also the openvino engine f32 and bf16 and the onnxruntime engine
(optimize_for_inference(engine=...): the trunk in the engine, our head in torch; for the head alone those
engines run the fused eager head); ONNX Runtime, OpenVINO with INFERENCE_PRECISION_HINT f32 and bf16 (the
same ONNX file as ONNX Runtime), and for the head the fresh-memory floor: torch.empty + fill of the head's
output. Each case ends with OpenVINO's time over each of ours at equal precision (above 1: ours is faster).
A path whose package is missing is skipped with the reason. glibc keeps freed memory in this process (as
optimize_for_inference and the command line set it; FCN_KERNELS_KEEP_MEMORY=0 measures glibc's default).
Shared by `fcn-kernels bench --peers` and benchmarks/bench_peers.py.
"""

import functools
import os
import statistics
import tempfile
import time

import torch
from torch import nn

from .._malloc import keep_memory
from ..export import export_onnx
from ..models import FCN8s, optimize_for_inference
from .bench import fcn8s_stages, fused_head, head_inputs, stock_head

N_CLASS = 21
OPENVINO_PRECISIONS = ("f32", "bf16")


class Head(nn.Module):
    """The FCN-8s head as a module (fixed depthwise bilinear weights as buffers), for the paths that take
    a module: optimize_for_inference and the ONNX export."""

    def __init__(self, weights, groups, image, fused):
        super().__init__()
        for i, w in enumerate(weights):
            self.register_buffer(f"w{i}", w)
        self.groups, self.image, self.fused = groups, image, fused
        self.stages = fcn8s_stages(image)

    def forward(self, score_fr, pool4, pool3):
        ws = [self.w0, self.w1, self.w2]
        head = fused_head if self.fused else stock_head
        return head([score_fr, pool4, pool3], ws, self.groups, self.image, stages=self.stages)


def fcn8s_pair(width, seed=0):
    """(stock, fused) FCN-8s on the same parameters; random score layers, so the skips carry signal."""
    torch.manual_seed(seed)
    fused = FCN8s(n_class=N_CLASS, fused=True, width=width).eval()
    with torch.no_grad():
        for name in fused.score_layer_names():
            getattr(fused, name).weight.normal_(0, 0.01)
    stock = FCN8s(n_class=N_CLASS, fused=False, width=width).eval()
    stock.load_state_dict(fused.state_dict())
    return stock, fused


def _eager(module):
    def f(*inputs):
        with torch.no_grad():
            return module(*inputs)

    return f


def _peer_paths(module, inputs, folder):
    """ONNX Runtime and OpenVINO on one ONNX export of `module`: {name: callable or skip reason}."""
    paths = {}
    try:
        import onnxruntime as ort
    except ImportError as exc:
        paths["onnxruntime"] = f"skipped: onnxruntime is not installed ({exc})"
        ort = None
    try:
        import openvino as ov
    except ImportError as exc:
        for p in OPENVINO_PRECISIONS:
            paths[f"openvino {p}"] = f"skipped: openvino is not installed ({exc})"
        ov = None
    if ort is None and ov is None:
        return paths
    try:
        path = export_onnx(module, inputs, os.path.join(folder, "model.onnx"), dynamic=False)
    except ImportError as exc:
        return {
            name: f"skipped: the ONNX export needs the deploy extra ({exc})"
            for name in ["onnxruntime"] + [f"openvino {p}" for p in OPENVINO_PRECISIONS]
        }
    threads = torch.get_num_threads()
    arrays = [x.numpy() for x in inputs]
    if ort is not None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feed = {i.name: a for i, a in zip(session.get_inputs(), arrays)}
        paths["onnxruntime"] = lambda *_: session.run(None, feed)[0]
    if ov is not None:
        core = ov.Core()
        for p in OPENVINO_PRECISIONS:
            compiled = core.compile_model(
                core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": p, "INFERENCE_NUM_THREADS": threads}
            )
            request = compiled.create_infer_request()
            paths[f"openvino {p}"] = lambda *_, r=request: r.infer(arrays)[0]
    return paths


def _torch_paths(stock, fused, compile):
    """The PyTorch paths of one comparison: stock eager, torch.compile(stock), fused eager, the torch engine."""
    paths = {"stock eager": _eager(stock)}
    if compile:
        paths["compile(stock)"] = _eager(torch.compile(stock))
    paths["fused eager"] = _eager(fused)
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        paths[f"torch engine {name}"] = optimize_for_inference(fused, dtype=dtype, compile=compile)
    return paths


# (row, engine, dtype): optimize_for_inference's vendor engines
VENDOR_ENGINES = (
    ("openvino engine f32", "openvino", torch.float32),
    ("openvino engine bf16", "openvino", torch.bfloat16),
    ("onnxruntime engine", "onnxruntime", torch.float32),
)


@functools.cache
def _engine_paths(width):
    """The vendor engines on fcn8s_pair(width)'s fused model, built once for every case: they take any
    batch and size (dynamic shapes), and converting the trunk is most of a minute per engine."""
    fused, paths = fcn8s_pair(width)[1], {}
    for name, engine, dtype in VENDOR_ENGINES:
        try:
            paths[name] = optimize_for_inference(fused, dtype=dtype, compile=False, engine=engine)
        except ImportError as exc:
            paths[name] = f"skipped: {exc}"
    return paths


def model_paths(batch, image, width, folder, compile=True):
    """{path name: callable or skip reason} and the inputs, for the whole FCN-8s."""
    x = torch.randn(batch, 3, image, image, generator=torch.Generator().manual_seed(1))
    stock, fused = fcn8s_pair(width)
    paths = _torch_paths(stock, fused, compile)
    paths.update(_engine_paths(width))
    paths.update(_peer_paths(fused, (x,), folder))
    return paths, (x,)


def head_paths(batch, image, folder, compile=True):
    """{path name: callable or skip reason} and the inputs, for the FCN-8s head (depthwise bilinear)."""
    scores, weights, groups = head_inputs(batch, n_class=N_CLASS, image=image)
    stock, fused = Head(weights, groups, image, False), Head(weights, groups, image, True)
    paths = _torch_paths(stock, fused, compile)
    paths.update(_peer_paths(fused, tuple(scores), folder))
    paths["floor: empty + fill"] = lambda *_: torch.empty(batch, N_CLASS, image, image).fill_(1.0)
    return paths, tuple(scores)


def interleaved(paths, inputs, rounds, warmup=2):
    """{name: median seconds}: every round calls every path once, in order."""
    for fn in paths.values():
        for _ in range(warmup):
            fn(*inputs)
    times = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            fn(*inputs)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def relative_errors(paths, inputs, reference="fused eager"):
    """{name: max |output - reference's| / max |reference's|} of every path but the floor."""
    ref = torch.as_tensor(paths[reference](*inputs)).float()
    scale = ref.abs().max().item() or 1.0
    return {
        name: (torch.as_tensor(fn(*inputs)).float() - ref).abs().max().item() / scale
        for name, fn in paths.items()
        if not name.startswith("floor")
    }


CASES = ((1, 256), (1, 500), (4, 256))  # (batch, image), the issue's
SMOKE_CASES = ((1, 64),)


def run(cases=CASES, width=1.0, rounds=7, parts=("head", "model"), compile=True, out=print):
    """The table: one row per (part, batch, image, path), with its time against fused eager's and its
    output's error relative to fused eager's (bf16 paths: about 1e-2). Returns the rows as dicts."""
    rows = []
    out(
        f"peers, CPU {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, FCN-8s width "
        f"{width}, {rounds} interleaved rounds (median); malloc: {keep_memory()}"
    )
    for part in parts:
        for batch, image in cases:
            with tempfile.TemporaryDirectory() as folder:
                paths, inputs = (
                    head_paths(batch, image, folder, compile)
                    if part == "head"
                    else model_paths(batch, image, width, folder, compile)
                )
                runnable = {n: f for n, f in paths.items() if callable(f)}
                times = interleaved(runnable, inputs, rounds)
                errors = relative_errors(runnable, inputs)
            base = times["fused eager"]
            out(f"{part}, batch {batch}, {image}x{image}:")
            for name, f in paths.items():
                if name not in times:
                    out(f"  {name:<22} {f}")
                    rows.append(dict(part=part, batch=batch, image=image, path=name, skipped=f))
                    continue
                ms = times[name] * 1e3
                err = errors.get(name)
                out(
                    f"  {name:<22} {ms:>10.2f} ms  {times[name] / base:>6.2f}x fused eager"
                    + ("" if err is None else f"  rel. err {err:.1e}")
                )
                rows.append(dict(part=part, batch=batch, image=image, path=name, ms=ms, rel_err=err))
            for peer, ours in LEVELS:
                pairs = [f"{o} {times[peer] / times[o]:.2f}x" for o in ours if o in times and peer in times]
                if pairs:
                    out(f"  {peer}'s time / ours: {', '.join(pairs)}")
    return rows


# OpenVINO alone against our paths at equal precision
LEVELS = (
    ("openvino f32", ("torch engine fp32", "openvino engine f32", "fused eager")),
    ("openvino bf16", ("torch engine bf16", "openvino engine bf16")),
)


def cpu_name():
    """The CPU's model name (/proc/cpuinfo on Linux) with its family and model numbers (cloud CPUs are often all
    "AMD EPYC" or "Intel Xeon", whatever their generation) and whether it computes bf16 natively."""
    import platform

    name, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0]  # the first processor's entry
        info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
        name, flags = info.get("model name", name), set(info.get("flags", "").split())
        if "cpu family" in info:
            name += f", family {info['cpu family']} model {info.get('model', '?')}"
    except OSError:
        pass
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return f"{name or 'unknown'} (bf16: {'native, ' + ' '.join(native) if native else 'not native'})"
