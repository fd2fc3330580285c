"""What the conv modules (RarefiedConv2d, FusedUpsampleSkip) set up alike."""

from .._args import check_channels, pair


def init_conv(module, in_channels, out_channels, groups, kernel_size, backend, device, dtype):
    """Checks and sets module's in_channels, out_channels, groups, kernel_size and backend; returns the factory
    keywords (device, dtype) of its parameters."""
    module.in_channels, module.out_channels, module.groups = check_channels(in_channels, out_channels, groups)
    module.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
    module.backend = backend
    return {"device": device, "dtype": dtype}
