"""File I/O every writer and loader of the package shares: atomic writes and code-free loads."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import tempfile
import threading
from pathlib import Path

import torch

__all__ = ["atomic_path", "atomic_write", "write_json", "load_weights"]

_UMASK_LOCK = threading.Lock()
_STATUS = "/proc/self/status"  # where Linux tells the umask


def _umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux 4.7+:
    /proc/self/status). os.umask can only be read by setting it, and the value is process-wide: a file
    another thread creates in between gets the value set. Elsewhere we set 0o077 for that instant, so
    such a file is at worst more private than asked, never less, and the lock keeps two readers here from
    restoring each other's stand-in."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary file name beside `path` for a writer that wants a name (ONNX, AOTInductor);
    once the block ends without an error, the file is fsynced and renamed over `path`.

    The temporary file is in the same folder (same file system, so the rename is atomic): a crash at any
    moment leaves either the old file or the new one, never a half-written one. Its name starts with a
    dot and ends in `suffix`. The file written gets the mode any new file gets, 0o666 less the umask
    (0o644 under the usual 0o022), not mkstemp's private 0o600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # before the fsync, which then makes the mode durable too
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # the rename itself survives a power loss only once the folder is synced
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Yield a file object whose content replaces `path` only once it is completely written (atomic_path)."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def write_json(path, obj) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1)


def load_weights(path):
    """torch.load(path) with weights_only=True, onto the CPU: tensors, containers, numbers and strings
    only. A file holding anything else (which unpickling could make run code) is refused with a
    ValueError naming it; nothing in it is executed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc) and "Unsupported operand" not in str(exc):  # not garbage
            found = re.search(r"GLOBAL (\S+)", str(exc))
            what = f" ({found.group(1)})" if found else ""
            raise ValueError(
                f"refused to load {str(path)!r}: it holds objects{what} other than tensors, "
                "containers, numbers and strings, and loading those could run code; nothing was "
                "executed"
            ) from None
        error = type(exc)("unpickling failed")
    except (OSError, RuntimeError, EOFError, KeyError, IndexError, ValueError) as exc:  # a damaged file
        error = exc
    raise ValueError(
        f"cannot read {str(path)!r}: not a complete file written by torch.save "
        f"({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''})"
    )
