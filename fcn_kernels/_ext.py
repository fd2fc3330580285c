"""Loads the compiled extension, if it was built. Importing it registers the C++ ops."""
import torch

try:
    from . import _C  # noqa: F401

    HAS_EXTENSION = True
    EXTENSION_ERROR = None
except ImportError as exc:  # pure-Python install (FCN_KERNELS_NO_EXT=1) or a broken build
    HAS_EXTENSION = False
    EXTENSION_ERROR = exc


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether fcn_kernels::<op> has a kernel for dispatch_key ("CPU", "CUDA")."""
    if not HAS_EXTENSION:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"fcn_kernels::{op}", dispatch_key)
    except RuntimeError:  # an extension built from older sources, without this op
        return False
