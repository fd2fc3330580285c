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
    graph), so a compile option (torch.compile(options=...)) cannot replace the flag: tried, the graph
    is then not frozen. A new `config.patch(freezing=True)` a call is unsafe: where the config is one for
    the process (torch before 2.12) a thread leaving its patch turned freezing off under another thread's
    compilation, and the last one to leave could leave it on for the whole process; where values are per
    thread, torch 2.14's patch object keeps a ContextVar alive in the thread for good, a leak on every
    call (tests/test_serving.py holds the memory flat). So: per thread, set and restore the thread's own value;
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
        autocast = (
            torch.autocast(x.device.type, dtype=self.dtype) if self.dtype != x.dtype else contextlib.nullcontext()
        )
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
    r"""A copy of ``model`` tuned for inference, with the same outputs within the dtype's rounding.

    The copy is in eval mode, its parameters do not require grad, it runs without autograd, in
    channels_last, under bf16 autocast when asked, and compiled with Inductor freezing when asked (the
    fcn_kernels ops stay custom ops in the graph). Each choice is kept because it measured faster: see the
    table in docs/DESIGN.md §3. ``model`` itself is left untouched.

    Args:
        model (nn.Module): an image model; an FCN's ``predict`` is kept (labels via
            :func:`fcn_kernels.upsample_argmax`), others predict ``model(images).argmax(1)``.
        dtype (torch.dtype): ``torch.float32``, or ``torch.bfloat16`` (autocast; outputs are returned in the
            inputs' dtype). Default: torch.float32.
        compile (bool): ``torch.compile`` with Inductor freezing; the first call per input size compiles
            (tens of seconds for a whole FCN on a CPU). Default: True.

    Returns:
        InferenceModel: ``forward(images)`` gives the scores (Tensor[N, n_class, H, W], in the images' dtype),
        ``predict(images)`` the labels (Tensor[N, H, W], int64). Thread-safe; inference only.

    Example::

        >>> import torch
        >>> from fcn_kernels.models import FCN8s, optimize_for_inference
        >>> model = FCN8s(n_class=21, width=1 / 16)
        >>> fast = optimize_for_inference(model, dtype=torch.bfloat16, compile=False)
        >>> images = torch.randn(1, 3, 32, 32)
        >>> fast(images).dtype, fast.predict(images).shape
        (torch.float32, torch.Size([1, 32, 32]))
        >>> model.training                                    # the original is untouched
        True
    """
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return InferenceModel(m.to(memory_format=torch.channels_last), dtype, compile)
