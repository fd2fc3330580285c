"""The FCN-8s head benchmark: the three upsample + skip + crop stages of docs/DESIGN.md §2 (VOC geometry,
500x500 input, 21 classes), fused vs the stock composition vs torch.compile(stock).

Shared by `fcn-kernels bench` and benchmarks/ (pytest-benchmark), so both time the same thing.
"""

import functools
import json
import logging
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import reference
from ..models import FCN8s
from ..modules.upsample import bilinear_kernel
from ..ops.upsample_skip import upsample_skip


@dataclass(frozen=True)
class Stage:
    name: str
    in_hw: tuple  # coarse score map
    kernel: int
    stride: int
    skip_hw: tuple  # None: no skip
    skip_offset: tuple  # (rows, cols)
    out_offset: tuple  # (rows, cols)
    out_size: tuple  # None: the full output


def fcn8s_stages(image=500):
    """The head's stages for a square image of this size, as fcn_kernels.models.FCN8s has them: kernels,
    strides and crop offsets (derived from the layers by models/coord.py), the sizes from its trunk run on
    the meta device (no memory, no arithmetic)."""
    return fcn_stages(FCN8s, image)


@functools.lru_cache(maxsize=None)
def fcn_stages(model_class, image=500):
    """fcn8s_stages for any of the FCN models (FCN32s, FCN16s, FCN8s): its upsampling stages, in order."""
    with torch.device("meta"):
        model = model_class(n_class=1, width=1 / 64).eval()
        score_fr, *scores = model.scores(torch.empty(1, 3, image, image))
    taps = dict(zip([tap for *_, tap in model_class.STAGES if tap is not None], scores))
    stages, hw = [], tuple(score_fr.shape[2:])
    for name, kernel, stride, tap in model_class.STAGES:
        if tap is None:
            stages.append(Stage(name, hw, kernel, stride, None, (0, 0), model.offsets["output"], (image, image)))
        else:
            stages.append(
                Stage(f"{name}+{tap}", hw, kernel, stride, tuple(taps[tap].shape[2:]), model.offsets[tap], (0, 0), None)
            )
            hw = tuple((n - 1) * stride + kernel for n in hw)
    return tuple(stages)


def head_inputs(
    batch, n_class=21, image=500, dense=False, dtype=torch.float32, device="cpu", requires_grad=False, seed=0
):
    """(score_fr, score_pool4, score_pool3) and the three bilinear weights (depthwise or dense-diagonal)."""
    g = torch.Generator().manual_seed(seed)
    stages = fcn8s_stages(image)

    def mk(hw):
        x = torch.randn(batch, n_class, *hw, generator=g).to(device=device, dtype=dtype)
        return x.requires_grad_(requires_grad)

    scores = [mk(stages[0].in_hw), mk(stages[0].skip_hw), mk(stages[1].skip_hw)]
    groups = 1 if dense else n_class
    weights = [bilinear_kernel(n_class, s.kernel, groups, dtype=dtype, device=device) for s in stages]
    return scores, weights, groups


def stage_inputs(stage, batch, n_class=21, dense=False, dtype=torch.float32, device="cpu", requires_grad=False, seed=0):
    """One stage's (x, bilinear weight, skip or None, upsample_skip's keyword arguments) at this batch."""
    g = torch.Generator().manual_seed(seed)

    def mk(hw):
        return (
            torch.randn(batch, n_class, *hw, generator=g).to(device=device, dtype=dtype).requires_grad_(requires_grad)
        )

    x = mk(stage.in_hw)
    skip = mk(stage.skip_hw) if stage.skip_hw else None
    groups = 1 if dense else n_class
    w = bilinear_kernel(n_class, stage.kernel, groups, device=device, dtype=dtype)
    geometry = ("stride", "out_offset", "out_size", "skip_offset")
    return x, w, skip, dict(groups=groups, **{k: getattr(stage, k) for k in geometry})


def region_scores(batch, n_class=21, hw=(70, 70), present=3, margin=8.0, noise=0.5, generator=None):
    """Class scores shaped like a segmentation's, for what depends on the data (upsample_argmax's sure labels):
    in each image `present` classes fill regions (a coarse random field, bilinearly enlarged, its argmax),
    their class `margin` above the others and blended at the boundaries, plus N(0, noise^2) everywhere."""
    out = noise * torch.randn(batch, n_class, *hw, generator=generator)
    quarter = [max(1, n // 4) for n in hw]
    for b in range(batch):
        classes = torch.randperm(n_class, generator=generator)[:present]
        field = F.interpolate(torch.rand(1, len(classes), 3, 3, generator=generator), size=quarter, mode="bilinear")
        winner = F.one_hot(field.argmax(1), len(classes)).permute(0, 3, 1, 2).float()
        out[b, classes] += margin * F.interpolate(winner, size=tuple(hw), mode="bilinear")[0]
    return out


def _head(fn, scores, weights, groups, stages):
    score_fr, pool4, pool3 = scores
    s1, s2, s3 = stages
    h = fn(score_fr, weights[0], None, pool4, stride=s1.stride, groups=groups, skip_offset=s1.skip_offset)
    h = fn(h, weights[1], None, pool3, stride=s2.stride, groups=groups, skip_offset=s2.skip_offset)
    return fn(
        h, weights[2], None, None, stride=s3.stride, groups=groups, out_offset=s3.out_offset, out_size=s3.out_size
    )


# `stages`: fcn8s_stages(image) found beforehand, for a caller that torch.compile traces (Dynamo warns of
# the cache wrapper, and building the meta model is no part of a graph).
def fused_head(scores, weights, groups, image=500, backend=None, stages=None):
    fn = lambda *a, **k: upsample_skip(*a, backend=backend, **k)  # noqa: E731
    return _head(fn, scores, weights, groups, stages or fcn8s_stages(image))


def stock_head(scores, weights, groups, image=500, stages=None):
    return _head(reference.upsample_skip, scores, weights, groups, stages or fcn8s_stages(image))


def compiled_stock_head(image=500):
    """torch.compile(stock head), (scores, weights, groups) -> output; the stages are found before
    compiling (building the meta model is no part of the graph). Dynamo's caches are reset first: each
    table row makes one (one compile per shape and pass: forward, forward+backward)."""
    torch._dynamo.reset()
    stages = fcn8s_stages(image)
    return torch.compile(
        lambda scores, weights, groups: _head(reference.upsample_skip, scores, weights, groups, stages)
    )


def head_bytes(batch, n_class=21, image=500, itemsize=4):
    """Bytes the fused head must move at least: every input read once, every stage's output written
    once, the intermediate stages read back once."""
    s1, s2, s3 = fcn8s_stages(image)
    up2 = (s1.in_hw[0] - 1) * 2 + 4
    up4 = (up2 - 1) * 2 + 4
    elems = (
        s1.in_hw[0] ** 2  # score_fr
        + 2 * up2 * up2  # pool4 window read, stage-1 output written
        + up2 * up2
        + 2 * up4 * up4  # stage-1 output read, pool3 window read, stage-2 output written
        + up4 * up4
        + image * image
    )  # stage-2 output read, final output written
    return batch * n_class * elems * itemsize


class JsonLines:
    """Results as they come: one JSON object a line, each flushed as it is written, so a run cut short (a
    timeout) keeps every line before. path None: writes nothing."""

    def __init__(self, path):
        self.file = open(path, "w") if path else None

    def __call__(self, obj):
        if self.file:
            self.file.write(json.dumps(obj) + "\n")
            self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


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


def _import_cpp_extension_quietly():
    """torch.compile imports torch.utils.cpp_extension, which logs "No CUDA runtime is found" on a CUDA build
    of torch without a GPU: true, expected on a CPU benchmark, and no part of the table. Import it once with
    that logger muted."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        log.setLevel(level)


@contextmanager
def cudnn_tf32(enabled):
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def run(
    batches=(1, 4),
    weights=("depthwise", "dense"),
    dtype=torch.float32,
    backward=False,
    compile=True,
    repeat=10,
    image=500,
    device="cpu",
    backends=(None,),
    out=print,
    on_row=None,
):
    """The head table: one row per (batch, weights), a fused column per backend (None: automatic).
    On CUDA in float32 the stock columns are timed twice: with TF32 (cuDNN's default) and IEEE float32,
    by the same compiled head (cuDNN's TF32 switch is read at run time: no second compile).
    compile: the torch.compile(stock) columns, compiled once per row. Returns the rows as dicts; each is
    also given to on_row as soon as it is measured (a caller that saves it keeps it past a timeout)."""
    device = torch.device(device)
    rows = []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    names = [b or "fused" for b in backends]
    # the stock columns' arithmetic: cuDNN rounds float32 convolution inputs to TF32 unless told not to
    modes = [("", None)]
    if device.type == "cuda" and dtype == torch.float32:
        modes = [(" tf32", True), (" ieee", False)]
    stock_cols = [
        f"{kind}{suffix}" for suffix, _ in modes for kind in ("eager", "compiled") if compile or kind == "eager"
    ]
    out(
        f"FCN-8s head, {image}x{image}, 21 classes, {dtype}, {'forward+backward' if backward else 'forward'}, "
        f"{device}, {torch.get_num_threads()} threads; fused: {arithmetic(dtype)}; stock"
        + (
            ": TF32 (cudnn.allow_tf32=True, the default) and IEEE float32 (False)"
            if len(modes) > 1
            else f": {arithmetic(dtype, device, stock=True)}"
        )
    )
    width = {c: max(11, len(c) + 4) for c in names + stock_cols}
    out(
        f"{'batch':>5} {'weights':>9} "
        + " ".join(f"{c + ' ms':>{width[c]}}" for c in names + stock_cols)
        + f" {'eager/fused':>11} {'compiled/fused':>14} {'max err':>9} {'floor %':>7}"
    )
    if compile:
        _import_cpp_extension_quietly()
    for batch in batches:
        # A copy of the head's bytes into a fresh tensor, per batch: allocation behaves as the head's
        # own (on CPU, sizes past glibc's mmap threshold pay page faults on every call).
        itemsize = torch.empty((), dtype=dtype).element_size()
        bw = copy_bandwidth(head_bytes(batch, image=image, itemsize=itemsize) // 2, device)
        for kind in weights:
            scores, ws, groups = head_inputs(
                batch, image=image, dense=kind == "dense", dtype=dtype, device=device, requires_grad=backward
            )
            exact = stock_head(
                [s.detach().cpu().double() for s in scores], [w.cpu().double() for w in ws], groups, image
            )

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
            t_stock = {}
            compiled_head = compiled_stock_head(image) if compile else None
            for suffix, tf32 in modes:
                with cudnn_tf32(tf32) if tf32 is not None else nullcontext():
                    t_stock["eager" + suffix] = timeit(step(lambda s, w, g: stock_head(s, w, g, image)), repeat)
                    if compile:
                        t_stock["compiled" + suffix] = timeit(step(compiled_head), repeat)
            err = max((f().detach().cpu().double() - exact).abs().max().item() for f in fused.values())
            best = min(t_fused.values())
            floor = head_bytes(batch, image=image, itemsize=scores[0].element_size()) / bw
            t_eager, t_comp = t_stock["eager" + modes[0][0]], t_stock.get("compiled" + modes[0][0], float("nan"))
            row = dict(
                batch=batch,
                weights=kind,
                dtype=str(dtype),
                backward=backward,
                fused_ms={n: t * 1e3 for n, t in t_fused.items()},
                eager_ms=t_eager * 1e3,
                compiled_ms=t_comp * 1e3,
                max_err=err,
                floor_ms=floor * 1e3,
                copy_gbps=bw / 1e9,
                stock_ms={c: t_stock[c] * 1e3 for c in stock_cols},
                arithmetic=dict(
                    fused=arithmetic(dtype),
                    **{c: "TF32" if c.endswith("tf32") else arithmetic(dtype) for c in stock_cols},
                ),
            )
            rows.append(row)
            if on_row is not None:
                on_row(row)
            times = dict(t_fused, **t_stock)
            out(
                f"{batch:>5} {kind:>9} "
                + " ".join(f"{times[c] * 1e3:>{width[c]}.2f}" for c in names + stock_cols)
                + f" {t_eager / best:>10.1f}x {t_comp / best:>13.1f}x {err:>9.1e} {100 * floor / best:>6.0f}%"
            )
    out(
        "eager/fused, compiled/fused (" + (modes[0][0].strip() or "stock") + " columns), floor %: against the "
        "fastest fused backend; floor %: the head's minimum bytes (inputs and outputs once) at the bandwidth of a "
        "copy of as many bytes, over fused time" + ("" if not backward else " (forward bytes only)")
    )
    return rows


def arithmetic(dtype, device="cpu", stock=False):
    """The arithmetic of a column: the fused kernels compute in IEEE float32 (or float64); the stock ops in
    float32 on CUDA use TF32 while torch.backends.cudnn.allow_tf32 is set (the default)."""
    if stock and torch.device(device).type == "cuda" and dtype == torch.float32 and torch.backends.cudnn.allow_tf32:
        return "TF32"
    if dtype == torch.float64:
        return "float64"
    return "IEEE float32" if dtype == torch.float32 else f"{str(dtype).replace('torch.', '')}, float32 accumulation"
