"""optimize_for_inference: an FCN (or any image model) made fast for inference (docs/DESIGN.md §3)."""
import contextlib
import contextvars
import copy
import functools
import threading

import torch
from torch import nn


class _FreezingOn:
    """A reusable context manager: `config.freezing` is True inside it, and as it was once it ends, when
    threads enter and leave it in any order.

    Dynamo reads torch._inductor.config.freezing itself when it traces (parameters become constants of the
    graph), so a compile option (torch.compile(options=...)) cannot replace the flag: measured, the graph
    is then not frozen. A new `config.patch(freezing=True)` a call is unsafe: where the config is one for
    the process (torch before 2.12) a thread leaving its patch turned freezing off under another thread's
    compilation, and the last one to leave could leave it on for the whole process; where values are per
    thread, torch 2.14's patch object keeps a ContextVar alive in the thread for good, about 300 bytes a
    call (measured: tests/test_serving.py). So: per thread, set and restore the thread's own value;
    process-wide, count the calls inside under a lock, the first one in sets it, the last one out
    restores it."""

    def __init__(self, config, per_thread):
        self._config, self._per_thread = config, per_thread
        self._lock, self._inside, self._saved = threading.Lock(), 0, None
        self._prior = threading.local()

    def __enter__(self):
        if self._per_thread:
            stack = self._prior.__dict__.setdefault("stack", [])
            stack.append(self._config.freezing)
            self._config.freezing = True
            return
        with self._lock:
            if self._inside == 0:
                self._saved = self._config.freezing
                self._config.freezing = True
            self._inside += 1

    def __exit__(self, *exc):
        if self._per_thread:
            self._config.freezing = self._prior.stack.pop()
            return
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                self._config.freezing = self._saved


def _per_thread(config) -> bool:
    """Whether `config`'s values are per thread (torch >= 2.12: each entry's override is a ContextVar)."""
    entry = getattr(config, "_config", {}).get("freezing")
    return isinstance(getattr(entry, "user_override", None), contextvars.ContextVar)


@functools.cache
def _freezing():
    """The one _FreezingOn of torch._inductor.config (imported on the first compiled call, not with us)."""
    import torch._inductor.config as config

    return _FreezingOn(config, _per_thread(config))


class InferenceModel(nn.Module):
    """What optimize_for_inference returns: `forward(images)` gives the model's scores (in the images'
    dtype), `predict(images)` its (N, H, W) int64 labels. Inference only: no gradients. A model of
    several inputs takes them all (forward(*inputs)), each 4-D one made channels_last."""

    def __init__(self, model, dtype, compile):
        super().__init__()
        self.model = model
        self.dtype = dtype
        # Functions, not modules: a compiled module would register the parameters a second time.
        self._scores = torch.compile(model.forward) if compile else model.forward
        self._labels = torch.compile(_labels_of(model)) if compile else _labels_of(model)
        self.compiled = compile

    def _run(self, fn, inputs):
        inputs = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in inputs]
        x = inputs[0]
        autocast = (torch.autocast(x.device.type, dtype=self.dtype) if self.dtype != x.dtype
                    else contextlib.nullcontext())
        # Freezing is read when a graph is traced and compiled (the first call, and a recompilation for a
        # new size). Nothing else here is shared between calls: threads may call forward and predict at once.
        freezing = _freezing() if self.compiled else contextlib.nullcontext()
        with torch.no_grad(), autocast, freezing:
            return fn(*inputs)

    def forward(self, *inputs):
        return self._run(self._scores, inputs).to(inputs[0].dtype)

    def predict(self, *inputs):
        return self._run(self._labels, inputs)

    def extra_repr(self):
        return f"dtype={self.dtype}, compiled={self.compiled}"


def _labels_of(model):
    # FCN*.predict writes labels without the full-resolution scores (upsample_argmax); other models argmax.
    return model.predict if hasattr(model, "predict") else (lambda *inputs: model(*inputs).argmax(1))


def optimize_for_inference(model, dtype=torch.float32, compile=True):
    """A copy of `model` (left untouched) tuned for inference; returns an InferenceModel whose outputs
    equal `model`'s within the dtype's rounding. dtype: torch.float32, or torch.bfloat16 (autocast);
    compile: torch.compile with Inductor freezing (the first call per input size compiles: tens of
    seconds for a whole FCN on a CPU).

    The choices, measured on the whole FCN-8s (width 1, 256x256, batch 1, 2 threads) on the project's
    shared 2-core machine (an Intel Xeon with AVX512-BF16 and AMX) under a load of 6 to 9, so as ratios
    of medians of interleaved rounds (two runs, 2026-12-02; lower is faster):
      - eval mode, parameters without grad, no autograd: dropout is the identity, no graph is kept.
      - channels_last: eager 0.95x NCHW eager. Under compile + freezing the two runs disagree (1.33x and
        0.88x NCHW's): within this machine's noise, kept for the GPU, where NHWC convolutions are the
        fast ones. Our upsample_skip reads NCHW: it reorders its small 21-channel inputs, about 0.7% of
        the model's time in the profile, and writes NCHW scores, the layout a user wants.
      - torch.compile alone: 0.98x eager; with Inductor freezing 0.83x of compile alone (the weights are
        constants: prepacked for oneDNN, bias + ReLU fused into the convolutions; our ops stay custom ops).
      - bf16 autocast (dtype=torch.bfloat16): eager 0.51x of fp32 eager; compiled and frozen 0.23x and
        0.38x of compiled fp32 (the bf16 weight casts are folded by freezing; our ops take bf16 inputs and
        accumulate in fp32).
      Against OpenVINO (same runs, INFERENCE_PRECISION_HINT set): fp32 1.12x to 1.6x OpenVINO f32's time,
      bf16 2.1x to 2.9x OpenVINO bf16's; at 1 thread 1.20x (fp32) and 1.21x (bf16). On the quiet machine
      (the README's peers' table, 2026-12-02): 0.68x to 0.79x of the fused eager model's time in fp32,
      0.11x to 0.27x in bf16; 1.10x to 1.15x OpenVINO f32's time, 1.14x to 2.8x OpenVINO bf16's.
      The profile puts 93% (fp32) and 75% (bf16) of the time in oneDNN's convolutions
      (mkldnn::_convolution_pointwise: the same AMX brgemm kernels OpenVINO runs, weights prepacked, no
      reorders), 22% (bf16) in Inductor's own kernels (pools, casts), and 1 to 2.5% in upsample_skip.
    """
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return InferenceModel(m.to(memory_format=torch.channels_last), dtype, compile)
