"""Loads the compiled extension, if it was built. Importing it registers the C++ ops."""

import sys
import warnings
from pathlib import Path

import torch

_PACKAGE = Path(__file__).resolve().parent


def _built_copies():
    """fcn_kernels/_C* files on sys.path other than this package's: installed copies it shadows."""
    found = []
    for entry in sys.path:
        pkg = Path(entry or ".").resolve() / "fcn_kernels"
        if pkg != _PACKAGE and pkg.is_dir():
            found += sorted(str(f) for f in pkg.glob("_C*.so"))
    return found


def _explain(exc):
    """A clear message (also warned once) when a source tree or a broken build stands in the way;
    None for a pure-Python install (FCN_KERNELS_NO_EXT=1 installs no _C on purpose)."""
    built_here = list(_PACKAGE.glob("_C*.so"))
    if built_here:
        return (
            f"fcn_kernels: the C++ extension {built_here[0]} failed to load ({exc}); only the 'reference' "
            f"backend runs. Rebuild it (pip install --no-build-isolation .)"
        )
    if not (_PACKAGE.parent / "csrc").is_dir():
        return None
    others = _built_copies()
    shadowed = f", and it shadows the installed copy with the extension at {others[0]}" if others else ""
    return (
        f"fcn_kernels was imported from the source tree {_PACKAGE.parent}, which has no built C++ "
        f"extension{shadowed}: only the 'reference' backend runs. Run Python from another directory, "
        f"or build the extension in place (pip install --no-build-isolation -e .)."
    )


try:
    from . import _C  # noqa: F401

    HAS_EXTENSION = True
    EXTENSION_ERROR = None
except ImportError as exc:  # pure-Python install (FCN_KERNELS_NO_EXT=1), a source tree, or a broken build
    HAS_EXTENSION = False
    _message = _explain(exc)
    EXTENSION_ERROR = ImportError(_message) if _message else exc
    if _message:  # the module runs once per process: warned once
        warnings.warn(_message, RuntimeWarning, stacklevel=2)


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether fcn_kernels::<op> has a kernel for dispatch_key ("CPU", "CUDA")."""
    if not HAS_EXTENSION:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"fcn_kernels::{op}", dispatch_key)
    except RuntimeError:  # an extension built from older sources, without this op
        return False
