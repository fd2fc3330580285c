"""Backend selection: which kernels run an op (docs/DESIGN.md §4).

backend=None picks per call and per shape (choose(); explain() says which and why): our kernels (CUDA
tensors: the CUDA C++ kernels where built, else Triton; CPU tensors: the C++ CPU kernels), except where the
vendor library is faster, where the stock composition runs ("reference": F.conv2d(dilation) or
F.conv_transpose2d + crop + add, i.e. oneDNN or cuDNN). The rule, whose measurements are the table of
docs/DESIGN.md §4.1:

- rarefied_conv2d, CPU and CUDA: 8 or more channels per group each way (dense) runs F.conv2d(dilation).
- rarefied_conv2d, CPU: depthwise without gradients, from DEPTHWISE_FORWARD_ELEMENTS output elements an
  image (Cout * Ho * Wo) and below rarefaction 8, runs F.conv2d(dilation).
- upsample_skip, CPU: 4 or more channels per group each way runs the stock composition when the weight is
  trained, at stride 1, or when compute-bound on a small map (cin/g * ceil(Kh/sh) * ceil(Kw/sw) > 32
  products per output, on an output plane under 128 x 128).
- upsample_skip, CUDA: 4 or more channels per group each way runs cuDNN.
- upsample_argmax, CPU: 4 or more channels per group each way runs the stock composition (scores, then
  argmax) when compute-bound: more than ARGMAX_DENSE_PRODUCTS products per output pixel (Cout * cin/g *
  ceil(Kh/sh) * ceil(Kw/sw)) on an output plane under 128 x 128, or more than ARGMAX_DENSE_PRODUCTS_LARGE
  on any plane. upsample_argmax, CUDA: 4 or more channels per group each way runs cuDNN, then argmax.
- Everything else runs our kernels.

The environment variable FCN_KERNELS_BACKEND, read at each call, replaces the automatic choice (a forced
backend, shapes notwithstanding), and backend= overrides both. Asking for a backend that cannot run on the
given tensors is an error, never a silent fallback.
"""

import importlib.util
import math
import os

import torch

from . import _ext

BACKENDS = ("reference", "cpu", "cuda", "triton")
ENV_VAR = "FCN_KERNELS_BACKEND"

# The ops every compiled backend provides, each with the kernels it needs (its forward and backward ops).
# An op counts as built for a backend when every one of its kernels is; a backend, when every op is.
_KERNELS = {
    "upsample_skip": ("upsample_skip", "upsample_skip_backward_input", "upsample_skip_backward_weight"),
    "upsample_argmax": ("upsample_argmax",),
    "rarefied_conv2d": ("rarefied_conv2d", "rarefied_conv2d_backward_input", "rarefied_conv2d_backward_weight"),
    # docs/DESIGN.md §2.5, §2.6: the fused losses, each computed by a statistics op
    "upsample_cross_entropy": ("upsample_logsumexp", "upsample_logsumexp_backward"),
    "interpolate_cross_entropy": ("interpolate_logsumexp", "interpolate_logsumexp_backward"),
    "interpolate_argmax": ("interpolate_argmax",),
}
_OPS = tuple(_KERNELS)
_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _triton_importable() -> bool:
    # origin: a real package, not a namespace match on some folder named "triton" on sys.path
    # (pytest puts tests/ on it, and tests/triton/ exists).
    spec = importlib.util.find_spec("triton")
    return spec is not None and spec.origin is not None and importlib.util.find_spec("fcn_kernels.triton") is not None


def _missing_kernels(backend: str) -> list:
    """The kernels (op names, backward ops included) that the extension lacks for a compiled backend
    ("cpu", "cuda"); [] when it has them all."""
    key = _DISPATCH_KEYS[backend]
    return [k for op in _OPS for k in _KERNELS[op] if not _ext.has_kernel(k, key)]


def _built_table() -> dict:
    """(backend, op) -> whether the op has every kernel it needs on that backend."""
    built = {("reference", op): True for op in _OPS}
    for backend in _DISPATCH_KEYS:
        missing = set(_missing_kernels(backend))
        built.update({(backend, op): not missing & set(_KERNELS[op]) for op in _OPS})
    built.update({("triton", op): _triton_importable() for op in _OPS})
    return built


# Which (backend, op) pairs have kernels, fixed once the extension has loaded. Computed at import
# so that resolve() is plain Python that torch.compile traces without graph breaks.
_BUILT = _built_table()

_LOSS_OPS = ("upsample_cross_entropy", "interpolate_cross_entropy", "interpolate_argmax")


def _built(backend: str, op: str) -> bool:
    return _BUILT.get((backend, op), False)


def _runs_on(backend: str, device: torch.device) -> bool:
    if backend == "reference":
        return True
    if backend == "cpu":
        return device.type == "cpu"
    if backend == "cuda":
        return device.type == "cuda"
    if backend == "triton":
        return device.type == "cuda" or (device.type == "cpu" and triton_interpret())
    return False


def available_backends() -> list:
    r"""The backends usable now on at least one device of this machine.

    A backend counts when it is built for every op (each with its backward kernels) and can run on this
    machine's CPU or GPU: "triton" needs a GPU, or ``TRITON_INTERPRET=1`` for CPU tensors. See
    docs/DESIGN.md §4.

    Returns:
        List[str]: a sublist of ``["reference", "cpu", "cuda", "triton"]``, in that order; "reference" is
        always there.

    Example::

        >>> import fcn_kernels
        >>> backends = fcn_kernels.available_backends()        # e.g. ['reference', 'cpu'] on a CPU machine
        >>> backends[0]
        'reference'
    """
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return [b for b in BACKENDS if all(_built(b, op) for op in _OPS) and any(_runs_on(b, d) for d in devices)]


# upsample_argmax, CPU, dense groups: our labels skip the scores' write and the argmax pass, but compute each
# score without reuse across channels, so the vendor GEMM's scores then argmax win past this many products per
# output pixel on small planes (under 128 x 128), and past the second on any plane (measured: DESIGN §4.1).
ARGMAX_DENSE_PRODUCTS = 2048
ARGMAX_DENSE_PRODUCTS_LARGE = 16384

# rarefied_conv2d, CPU, depthwise without gradients: oneDNN's direct depthwise forward beats ours from this
# many output elements per image (Cout * Ho * Wo) up, below rarefaction 8 (measured: docs/DESIGN.md §4.1).
DEPTHWISE_FORWARD_ELEMENTS = 2**17


def _taps(kernel, stride):
    """upsample_skip's taps per output: the input points an output element takes, ceil(Kh/sh) * ceil(Kw/sw)."""
    return math.ceil(kernel[0] / stride[0]) * math.ceil(kernel[1] / stride[1])


def _vendor_faster(op, device_type, cin_g, cout_g, kernel, stride, out_size, weight_grad, channels=1, grad=True):
    """Why the stock composition beats our kernels for this shape (the rule of the docstring above),
    or None where ours are at least as fast."""
    if op in _LOSS_OPS:
        return _loss_vendor_faster(op, cin_g, cout_g, out_size, weight_grad, channels)
    if op == "rarefied_conv2d":
        if cin_g >= 8 and cout_g >= 8:
            return "dense groups (>= 8 channels each way): the vendor convolution reuses across channels"
        if (
            device_type == "cpu"
            and cin_g == 1
            and not grad
            and max(stride) < 8
            and channels * out_size[0] * out_size[1] >= DEPTHWISE_FORWARD_ELEMENTS
        ):
            return "depthwise, no gradient, a large map, rarefaction < 8: oneDNN's depthwise forward is faster"
    elif op == "upsample_skip" and cin_g >= 4 and cout_g >= 4:
        if weight_grad:
            return "dense groups with a trained weight: the vendor weight gradient is faster"
        if tuple(stride) == (1, 1):
            return "dense groups at stride 1: the vendor convolution is faster"
        if device_type == "cuda":
            return "dense groups on CUDA: cuDNN is faster (measured on an H200, docs/performance.md)"
        else:
            if cin_g * _taps(kernel, stride) > 32 and out_size[0] * out_size[1] < 128 * 128:
                return "dense groups, compute-bound on a small map: the vendor GEMM is faster"
    elif op == "upsample_argmax" and cin_g >= 4 and cout_g >= 4:
        if device_type == "cuda":
            return "dense groups on CUDA: cuDNN's scores, then argmax (upsample_skip's measurement on an H200)"
        products = channels * cin_g * _taps(kernel, stride)
        small = out_size[0] * out_size[1] < 128 * 128
        if products > ARGMAX_DENSE_PRODUCTS_LARGE or (small and products > ARGMAX_DENSE_PRODUCTS):
            return "dense groups, compute-bound: the vendor GEMM's scores, then argmax, are faster"
    return None


# interpolate_cross_entropy: below this many scores an image (classes * Ho * Wo), the stock composition's
# few small ops cost less than our op's fixed overhead (docs/DESIGN.md §4.1).
INTERPOLATE_LOSS_MIN_SCORES = 2**13


def _loss_vendor_faster(op, cin_g, cout_g, out_size, weight_grad, channels):
    """The fused losses' rule (docs/DESIGN.md §4.1, with its measurements): why the stock composition is faster,
    or None. upsample_cross_entropy's kernels gather every class's scores tap by tap, with no reuse across
    channels: from 4 channels per group each way (3 with a trained weight) the vendor's GEMM-based transposed
    convolution beats them, on small and large maps alike; depthwise and narrow groups are ours, tiny maps
    included. interpolate_cross_entropy is ours but on tiny maps; interpolate_argmax, always ours."""
    if op == "interpolate_cross_entropy" and channels * out_size[0] * out_size[1] < INTERPOLATE_LOSS_MIN_SCORES:
        return "a tiny map: the stock composition's overhead is smaller"
    if op != "upsample_cross_entropy":
        return None
    if cin_g >= 4 and cout_g >= 4:
        return "dense groups (>= 4 channels each way): the vendor GEMM is faster"
    if weight_grad and cin_g >= 3 and cout_g >= 3:
        return "dense groups (>= 3 channels each way) with a trained weight: the vendor GEMM is faster"
    return None


def _auto(
    op,
    device,
    cin_g=1,
    cout_g=1,
    kernel=(1, 1),
    stride=(1, 1),
    out_size=(0, 0),
    weight_grad=False,
    channels=1,
    grad=True,
):
    """(backend, why) of the automatic choice. cin_g, cout_g: channels per group; kernel, stride, out_size:
    (rows, cols) of the filter, of upsample_skip's stride (rarefied_conv2d's rarefaction), of the output;
    weight_grad: whether the weight's gradient will be computed; channels: output channels; grad: whether
    any gradient will be."""
    why = _vendor_faster(op, device.type, cin_g, cout_g, kernel, stride, out_size, weight_grad, channels, grad)
    if why is not None:
        return "reference", why
    for b in ("cuda", "triton") if device.type == "cuda" else ("cpu",):
        if _built(b, op) and _runs_on(b, device):
            return b, "our kernels"
    return "reference", "no kernels built for this device"


def choose(op: str, device: torch.device, **shape) -> str:
    r"""The backend that ``backend=None`` picks for ``op`` on tensors of ``device`` and this shape.

    Our kernels, except where the vendor library is faster (the rule of docs/DESIGN.md §4.1, in this
    module's docstring); the environment variable FCN_KERNELS_BACKEND is not read here (see :func:`resolve`).

    Args:
        op (str): ``"upsample_skip"``, ``"upsample_argmax"`` or ``"rarefied_conv2d"``.
        device (torch.device): the device of the op's tensors.
        **shape: what the rule reads (each optional):
            cin_g (int): input channels per group. Default: 1.
            cout_g (int): output channels per group. Default: 1.
            kernel (Tuple[int, int]): upsample_skip's filter size (Kh, Kw). Default: (1, 1).
            stride (Tuple[int, int]): upsample_skip's stride, or rarefied_conv2d's rarefaction. Default: (1, 1).
            out_size (Tuple[int, int]): the output's (Ho, Wo). Default: (0, 0).
            weight_grad (bool): whether the weight's gradient will be computed (upsample_skip). Default: False.
            channels (int): output channels (rarefied_conv2d, upsample_argmax). Default: 1.
            grad (bool): whether any gradient will be computed (rarefied_conv2d). Default: True.

    Returns:
        str: ``"reference"`` (the stock composition), ``"cpu"``, ``"cuda"`` or ``"triton"``.

    Example::

        >>> import torch
        >>> from fcn_kernels import backends
        >>> backends.choose("rarefied_conv2d", torch.device("cpu"), cin_g=512, cout_g=512)
        'reference'
        >>> backends.choose("upsample_skip", torch.device("cpu"), cin_g=1, cout_g=1) in ("cpu", "reference")
        True
    """
    return _auto(op, device, **shape)[0]


def explain(op: str, device: torch.device, **shape) -> str:
    r""":func:`choose`'s answer and the reason for it, for logs and for people.

    Args:
        op (str): as in :func:`choose`.
        device (torch.device): as in :func:`choose`.
        **shape: as in :func:`choose`.

    Returns:
        str: ``"<backend>: <why>"``, e.g. ``"cpu: our kernels"``.

    Example::

        >>> import torch
        >>> from fcn_kernels import backends
        >>> backends.explain("upsample_skip", torch.device("cpu"), cin_g=21, cout_g=21, kernel=(4, 4),
        ...                  stride=(2, 2), out_size=(34, 34), weight_grad=True)
        'reference: dense groups with a trained weight: the vendor weight gradient is faster'
    """
    return ": ".join(_auto(op, device, **shape))


def resolve(backend, device: torch.device, op: str, **shape) -> str:
    r"""The backend that runs ``op`` on tensors of ``device``, as every op resolves its ``backend=`` argument.

    ``backend`` if given, else the environment variable FCN_KERNELS_BACKEND if set, else
    :func:`choose` ``(op, device, **shape)``. A named backend is checked, never replaced.

    Args:
        backend (str, optional): ``"reference"``, ``"cpu"``, ``"cuda"``, ``"triton"`` or None.
        device (torch.device): the device of the op's tensors.
        op (str): as in :func:`choose`.
        **shape: as in :func:`choose` (read only when the choice is automatic).

    Returns:
        str: the backend's name.

    Raises:
        ValueError: an unknown backend name. RuntimeError: a backend not built for ``op``, or one that cannot
        run on ``device`` (the message lists the available backends).

    Example::

        >>> import torch
        >>> from fcn_kernels import backends
        >>> backends.resolve("reference", torch.device("cpu"), "upsample_skip")
        'reference'
        >>> backends.resolve("cuda", torch.device("cpu"), "upsample_skip")
        Traceback (most recent call last):
            ...
        RuntimeError: backend='cuda'...
    """
    source = "backend"
    if backend is None:
        backend = os.environ.get(ENV_VAR) or None
        source = ENV_VAR
    if backend is None:
        return choose(op, device, **shape)
    if backend not in BACKENDS:
        raise ValueError(f"{source}={backend!r} is not one of {BACKENDS}")
    if not _built(backend, op):
        why = f" ({_ext.EXTENSION_ERROR})" if backend in ("cpu", "cuda") and not _ext.HAS_EXTENSION else ""
        raise RuntimeError(
            f"{source}={backend!r}: fcn_kernels was built without {backend} kernels "
            f"for {op}{why}; available: {available_backends()}"
        )
    if not _runs_on(backend, device):
        hint = (
            " (set TRITON_INTERPRET=1 before importing triton to run Triton on CPU)"
            if backend == "triton" and device.type == "cpu"
            else ""
        )
        raise RuntimeError(f"{source}={backend!r} cannot run {op} on {device.type} tensors{hint}")
    return backend
