"""Which torch.library ops a call runs (the profiler's record of every dispatcher call, on any device)."""

import torch


def op_names(fn, prefix="fcn_kernels::"):
    """The names of the ops that fn() calls, those starting with `prefix`."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events() if e.name.startswith(prefix)}
