"""optimize_for_inference: an FCN (or any image model) made fast for inference (docs/DESIGN.md §3)."""

import contextlib
import contextvars
import copy
import functools
import importlib
import os
import tempfile
import threading
import types

import torch
from torch import nn

from .._malloc import keep_memory as _keep_memory
from . import margin
from .fcn import _FCN
from .matmul_conv import MatmulConv2d, weights_pay

ENGINES = ("torch", "openvino", "onnxruntime")


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

    def __init__(self, model, dtype, compile, engine="torch"):
        super().__init__()
        self.model = model
        self.dtype, self.engine, self.compiled = dtype, engine, compile and engine == "torch"
        if engine != "torch":
            vendor = _Vendor(engine, model, dtype)
            scores, labels = _fcn_split(model, vendor) if vendor.fcn else (vendor.scores, vendor.labels)
        elif isinstance(model, _FCN) and dtype != torch.float32:
            scores, labels = _fcn_split(model, model.scores)
        else:
            scores, labels = model.forward, _labels_of(model)
        # Functions, not modules: a compiled module would register the parameters a second time.
        self._scores = _compiled(scores) if self.compiled else scores
        self._labels = _compiled(labels) if self.compiled else labels

    def _run(self, fn, inputs):
        if self.engine != "torch":  # the engine takes NCHW float32 and runs at its own precision hint
            with torch.no_grad():
                return fn(*inputs)
        inputs = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in inputs]
        x = inputs[0]
        autocast = (
            torch.autocast(x.device.type, dtype=self.dtype) if self.dtype != x.dtype else contextlib.nullcontext()
        )
        # Freezing is read when a graph is traced and compiled (the first call, and a recompilation for a
        # new size). Nothing else here is shared between calls: threads may call forward and predict at once.
        freezing = _freezing() if self.compiled else contextlib.nullcontext()
        with torch.no_grad(), autocast, freezing:
            if getattr(self.model, "_trim_margin", False):
                margin.choose(self.model, x)  # once per image size: the fastest of the margin's plans
            return fn(*inputs)

    def forward(self, *inputs):
        return self._run(self._scores, inputs).to(inputs[0].dtype)

    def predict(self, *inputs):
        return self._run(self._labels, inputs)

    def extra_repr(self):
        return f"dtype={self.dtype}, compiled={self.compiled}, engine={self.engine!r}"


def _compiled(fn):
    """torch.compile(fn) with static shapes (a graph per input size), behind a function of its own. Dynamo
    keeps its graphs, and counts them against its recompile limit (8), per code object: every InferenceModel
    of one model class shared one cache, so in one process the ninth graph (another model, dtype or size)
    ran eagerly, and a model's second size compiled a dynamic-shape graph (seen in the peers' table)."""

    def call(*inputs):
        return fn(*inputs)

    own = types.FunctionType(call.__code__.replace(), call.__globals__, call.__name__, None, call.__closure__)
    return torch.compile(own, dynamic=False)


def _labels_of(model):
    # FCN*.predict writes labels without the full-resolution scores (upsample_argmax); other models argmax.
    return model.predict if hasattr(model, "predict") else (lambda *inputs: model(*inputs).argmax(1))


class _Scores(nn.Module):
    """An FCN's trunk and score layers (`scores`) as a module, for the engines' converters."""

    def __init__(self, fcn):
        super().__init__()
        self.fcn = fcn

    def forward(self, x):
        return self.fcn.scores(x)


class _Vendor:
    """The trunk and score layers (an FCN's `scores`; another model: all of it) run by OpenVINO or ONNX
    Runtime, converted on the first call for any batch and image size (dynamic shapes: one compiled model,
    measured as fast as one compiled per shape). Calls return the engine's output buffers as tensors
    (torch.from_numpy: no copy), float32 at either precision hint; the FCN's head reads them in torch."""

    def __init__(self, engine, model, dtype):
        self.engine, self.model, self.dtype = engine, model, dtype
        self.fcn = isinstance(model, _FCN)
        self._infer, self._lock = None, threading.Lock()

    def __call__(self, *inputs):
        inputs = [x.to(torch.float32).contiguous() for x in inputs]
        if self._infer is None:
            with self._lock:  # the first calls of several threads convert once
                if self._infer is None:
                    part = _Scores(self.model).eval() if self.fcn else self.model  # eval: the export puts back its mode
                    build = _openvino if self.engine == "openvino" else _onnxruntime
                    self._infer = build(part, inputs, self.dtype)
        return self._infer(inputs)

    # not an FCN: the engine's output is the result, and its buffer is the engine's to reuse
    def scores(self, *inputs):
        return self(*inputs)[0].clone()

    def labels(self, *inputs):
        return self(*inputs)[0].argmax(1)


def _fcn_split(model, trunk):
    """An FCN's forward and predict with `trunk` (images -> `scores`' outputs) for its trunk and score
    layers, and its head in float32 outside autocast: the coarse scores are cast up (they are small), the
    full-size output is written once, in float32, with no bf16 copy of it to cast afterwards (faster at
    bf16: docs/DESIGN.md §3)."""

    def head(fn):
        def run(*inputs):
            outs = [s.float() for s in trunk(*inputs)]
            with torch.autocast(inputs[0].device.type, enabled=False):
                return fn(*outs, out_size=tuple(inputs[0].shape[2:]))

        return run

    return head(model.head), head(model.head_labels)


def _openvino(part, inputs, dtype):
    ov = importlib.import_module("openvino")
    from ..export import _in_eval_mode

    # torch.export with every size but the channels dynamic (OpenVINO's own tracing is torch.jit's, deprecated)
    program = _in_eval_mode(part, inputs, True, lambda m, xs, shapes: torch.export.export(m, xs, dynamic_shapes=shapes))
    converted = _plain_ceil_pools(ov.convert_model(program))
    hint = "bf16" if dtype == torch.bfloat16 else "f32"
    compiled = ov.Core().compile_model(
        converted, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    )
    local = threading.local()  # an infer request per thread: its output buffers are that thread's

    def infer(xs):
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        out = request.infer([x.numpy() for x in xs], share_inputs=True, share_outputs=True)
        return [torch.from_numpy(a) for a in out.to_tuple()]

    return infer


def ceil_is_torch_ceil(kernel, stride, dilation, pad_begin, pad_end):
    """Whether OpenVINO's MaxPool rounding "ceil" gives the windows of "ceil_torch" (PyTorch's ceil_mode) for
    every input size along one axis. ceil_torch drops the last window when it would start in the end padding;
    the last start is stride * ceil(L / stride) with L = size + pads - dilation * (kernel - 1) - 1, at most
    L + stride - 1, so no window starts there for any size iff pad_end + stride - 1 <= dilation * (kernel - 1)."""
    del pad_begin  # the bound on the last start is relative to size + pad_begin: it cancels
    return pad_end + stride - 1 <= dilation * (kernel - 1)


def _plain_ceil_pools(model):
    """`model` (an ov.Model from torch.export) with each MaxPool of rounding "ceil_torch" whose indices go
    unused made "ceil" where that gives the same windows for every size (ceil_is_torch_ceil; VGG's 2x2
    stride-2 pools). OpenVINO's CPU plugin computes ceil_torch pools with their indices and reorders them
    (a bf16 -> i32 stub per pool, even unused; the ONNX frontend's "ceil" pools have none): docs/performance.md,
    session 25."""
    import openvino.opset14 as opset

    changed = False
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MaxPool" or len(op.outputs()) < 2 or op.outputs()[1].get_target_inputs():
            continue
        a = op.get_attributes()
        axes = zip(a["kernel"], a["strides"], a["dilations"], a["pads_begin"], a["pads_end"])
        if a["rounding_type"] != "ceil_torch" or a["auto_pad"] != "explicit":
            continue
        if not all(ceil_is_torch_ceil(*axis) for axis in axes):
            continue
        plain = opset.max_pool(
            op.input_value(0),
            a["strides"],
            a["dilations"],
            a["pads_begin"],
            a["pads_end"],
            a["kernel"],
            "ceil",
            "explicit",
            a["index_element_type"],
            a["axis"],
        )
        plain.set_friendly_name(op.get_friendly_name())
        op.output(0).replace(plain.output(0))
        changed = True
    if changed:
        model.validate_nodes_and_infer_types()
    return model


def _onnxruntime(part, inputs, dtype):
    ort = importlib.import_module("onnxruntime")
    from ..export import export_onnx

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(part, tuple(inputs), os.path.join(folder, "scores.onnx"), dynamic=True)
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    # InferenceSession.run is thread-safe; its outputs are new arrays each call
    return lambda xs: [torch.from_numpy(a) for a in session.run(None, dict(zip(names, (x.numpy() for x in xs))))]


def _check_engine(engine, dtype):
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    if engine == "onnxruntime" and dtype != torch.float32:
        raise ValueError(f"engine='onnxruntime' runs float32 only on a CPU, got dtype={dtype}")
    if engine != "torch":
        try:
            importlib.import_module(engine)
        except ImportError as exc:
            raise ImportError(
                f"engine={engine!r} needs the {engine} package, which is not installed ({exc}): "
                f"pip install {engine}, or use engine='torch'"
            ) from exc


def optimize_for_inference(model, dtype=torch.float32, compile=True, engine="torch", keep_memory=True):
    r"""A copy of ``model`` tuned for inference, with the same outputs within the dtype's rounding.

    The copy is in eval mode, its parameters do not require grad, it runs without autograd, in
    channels_last, under bf16 autocast when asked, and compiled with Inductor freezing when asked (the
    fcn_kernels ops stay custom ops in the graph), an FCN's fc6 as im2col + matmul where that measured faster
    (:mod:`fcn_kernels.models.matmul_conv`; on the openvino engine at f32 too), and an FCN's trunk run on its
    image padded by less, the constant margin of conv1_1's padding put back after the pools
    (:mod:`fcn_kernels.models.margin`; every engine; the torch engine times its plans once per image size,
    on the first call). Each choice is kept because it measured faster: see docs/DESIGN.md §3. ``model``
    itself is left untouched.

    Args:
        model (nn.Module): an image model; an FCN's ``predict`` is kept (labels via
            :func:`fcn_kernels.upsample_argmax`), others predict ``model(images).argmax(1)``.
        dtype (torch.dtype): ``torch.float32``, or ``torch.bfloat16`` (autocast; outputs are returned in the
            inputs' dtype). Default: torch.float32.
        compile (bool): ``torch.compile`` with Inductor freezing; the first call per input size compiles
            (tens of seconds for a whole FCN on a CPU). ``engine="torch"`` only. Default: True.
        engine (str): ``"torch"``: all of the model in PyTorch, as above. ``"openvino"``: an FCN's trunk and
            score layers (``model.scores``; another model: all of it) converted on the first call and
            compiled by OpenVINO on the CPU for any batch and size, at ``INFERENCE_PRECISION_HINT`` f32 or
            bf16 from ``dtype``; the fused head runs in torch on OpenVINO's output buffers (no copies), and
            ``predict`` ends in :func:`fcn_kernels.upsample_argmax`. ``"onnxruntime"``: the same through
            ONNX Runtime (float32 only). Both need their package (ImportError otherwise) and run on the CPU.
            Default: "torch".
        keep_memory (bool): tell glibc's malloc to keep freed memory (``fcn_kernels._malloc``): big
            tensors, freed and allocated again every call, then stop coming back as fresh pages (the
            "fresh-page tax", measured in docs/DESIGN.md §3).
            **Process-wide** and for good: the process keeps its peak heap resident. Off with False, or
            with ``FCN_KERNELS_KEEP_MEMORY=0`` in the environment; a no-op on other C libraries than
            glibc. Default: True.

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
    _check_engine(engine, dtype)
    if keep_memory:
        _keep_memory()
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    if isinstance(m, _FCN):
        margin.enable(m)  # conv1_1's padded margin computed once (margin.py), in every engine
    if isinstance(m, _FCN) and MatmulConv2d.fits(m.fc6):  # im2col + matmul where it measured faster
        if engine == "torch":
            m.fc6 = MatmulConv2d.from_conv(m.fc6)
        elif engine == "openvino" and dtype == torch.float32 and weights_pay(dtype, m.fc6.weight.numel()):
            # exported for every size; bf16 measured mixed (docs/DESIGN.md §3)
            m.fc6 = MatmulConv2d.from_conv(m.fc6, always=True)
    return InferenceModel(m.to(memory_format=torch.channels_last), dtype, compile, engine)
