"""Backend selection (DESIGN.md §4).

backend=None picks automatically: CUDA tensors use the CUDA C++ kernels where
built, else Triton; CPU tensors use the C++ CPU kernels. The environment
variable FCN_KERNELS_BACKEND, read at each call, replaces the automatic choice.
Asking for a backend that cannot run on the given tensors is an error, never
a silent fallback.
"""
import importlib.util
import os

import torch

from . import _ext

BACKENDS = ("reference", "cpu", "cuda", "triton")
ENV_VAR = "FCN_KERNELS_BACKEND"

# Ops that every compiled backend provides; a backend counts as built when all have kernels.
_OPS = ("upsample_skip", "upsample_argmax", "rarefied_conv2d")


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _triton_importable() -> bool:
    # origin: a real package, not a namespace match on some folder named "triton" on sys.path
    # (pytest puts tests/ on it, and tests/triton/ exists).
    spec = importlib.util.find_spec("triton")
    return (spec is not None and spec.origin is not None
            and importlib.util.find_spec("fcn_kernels.triton") is not None)


# Which (backend, op) pairs have kernels, fixed once the extension has loaded. Computed at import
# so that resolve() is plain Python that torch.compile traces without graph breaks.
_BUILT = {("reference", op): True for op in _OPS}
_BUILT.update({("cpu", op): _ext.has_kernel(op, "CPU") for op in _OPS})
_BUILT.update({("cuda", op): _ext.has_kernel(op, "CUDA") for op in _OPS})
_BUILT.update({("triton", op): _triton_importable() for op in _OPS})


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
    """Backends usable now, for at least one device of this machine."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return [b for b in BACKENDS
            if any(_built(b, op) for op in _OPS) and any(_runs_on(b, d) for d in devices)]


def resolve(backend, device: torch.device, op: str) -> str:
    """The backend that runs `op` on tensors of `device`."""
    source = "backend"
    if backend is None:
        backend = os.environ.get(ENV_VAR) or None
        source = ENV_VAR
    if backend is None:
        order = ("cuda", "triton") if device.type == "cuda" else ("cpu",)
        for b in order:
            if _built(b, op) and _runs_on(b, device):
                return b
        return "reference"
    if backend not in BACKENDS:
        raise ValueError(f"{source}={backend!r} is not one of {BACKENDS}")
    if not _built(backend, op):
        why = f" ({_ext.EXTENSION_ERROR})" if backend in ("cpu", "cuda") and not _ext.HAS_EXTENSION else ""
        raise RuntimeError(f"{source}={backend!r}: fcn_kernels was built without {backend} kernels "
                           f"for {op}{why}; available: {available_backends()}")
    if not _runs_on(backend, device):
        hint = " (set TRITON_INTERPRET=1 before importing triton to run Triton on CPU)" \
            if backend == "triton" and device.type == "cpu" else ""
        raise RuntimeError(f"{source}={backend!r} cannot run {op} on {device.type} tensors{hint}")
    return backend
