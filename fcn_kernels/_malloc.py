"""keep_memory: glibc's malloc told to keep freed memory, so that big tensors stop page-faulting on every call
(docs/DESIGN.md §3, "the fresh-page tax").

glibc serves a block over M_MMAP_THRESHOLD (dynamic, at most 32 MB by default) with its own mmap and unmaps
it when freed, and trims the heap's free top past M_TRIM_THRESHOLD: a 125 MB activation of VGG16's conv1 or
the head's 84 MB output then comes back as fresh pages every call, each page faulted in and zeroed by the
kernel (docs/DESIGN.md §3 has the measurements). keep_memory raises both
thresholds, so such blocks come from the heap and go back to it: the process keeps its peak heap resident
(the cost: RSS stays at the high-water mark of the largest call instead of falling back between calls).

Process-wide and for the rest of the process. A no-op elsewhere than glibc (musl, macOS, Windows), and with
FCN_KERNELS_KEEP_MEMORY=0 in the environment. Threads other than the main one allocate from arenas of at
most 64 MB heaps, whose bigger blocks glibc still maps and unmaps each time.
"""

import ctypes
import os
import platform
import threading

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
# mallopt takes an int: 2 GiB - 1 is the most either threshold can be. Blocks below it come from the heap,
# and the heap's free top goes back to the OS only past it.
THRESHOLD = 2**31 - 1
ENV = "FCN_KERNELS_KEEP_MEMORY"

_lock = threading.Lock()
_state = None  # None: not tried yet; else what keep_memory returned


def opted_out() -> bool:
    return os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off")


def keep_memory() -> str:
    """Raise glibc's mmap and trim thresholds once per process. Returns what happened: "kept" (set now or
    before), "opted out" (FCN_KERNELS_KEEP_MEMORY=0), "not glibc" or "mallopt refused" (both no-ops)."""
    global _state
    with _lock:
        if _state is None:
            if opted_out():
                return "opted out"  # not remembered: the variable may be unset later
            if platform.libc_ver()[0] != "glibc":
                _state = "not glibc"
            else:
                mallopt = ctypes.CDLL(None).mallopt
                mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
                ok = mallopt(M_MMAP_THRESHOLD, THRESHOLD) and mallopt(M_TRIM_THRESHOLD, THRESHOLD)
                _state = "kept" if ok else "mallopt refused"
        return _state
