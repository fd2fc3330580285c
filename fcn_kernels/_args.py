"""Normalisation and validation of the int-or-pair arguments every op takes."""

import numbers

import torch

# The kernels' index arithmetic is int64: every extent, and every extent times a stride, rarefaction
# or channel count, is kept at most 2**60 so that the sums of such terms in csrc/index/ cannot
# overflow. csrc/host/checks.h (kMaxExtent, kRowSlack) holds the same limits for direct op calls.
MAX_EXTENT = 2**60
ROW_SLACK = 64


def check_extent(value, what):
    """An error naming `what` (the argument it comes from: a string, or a function making it, so that a
    call that passes formats nothing) when value is past MAX_EXTENT."""
    if value > MAX_EXTENT:
        what = what() if callable(what) else what
        raise ValueError(f"{what} is too large ({value} exceeds 2**60, the kernels' index range)")
    return value


def check_planes(channels, rows, cols, what):
    """`channels` planes of rows x cols, as the kernels index them (a spare row, a run of slack)."""
    check_extent(max(channels, 1) * (rows + 1) * (cols + ROW_SLACK), what)


def _is_int(v):
    return isinstance(v, torch.SymInt) or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def pair(value, name, *, minimum=None):
    """An int or a pair of ints -> tuple of two Python ints; TypeError/ValueError name the argument."""
    # Plain ints and pairs of them first: the checks below (abstract base classes) cost microseconds a call.
    if type(value) is int:
        out = (value, value)
    elif type(value) in (tuple, list) and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        out = tuple(value)
    else:
        out = _pair(value, name)
    if minimum is not None and min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {out}")
    return out


def _pair(value, name):
    if isinstance(value, torch.Tensor) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        out = (int(value), int(value))
    else:
        try:
            out = tuple(value)
        except TypeError:
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(out) != 2 or not all(_is_int(v) for v in out):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        # A SymInt (an input's size under torch.export with dynamic shapes) stays symbolic: int() would
        # specialise the exported graph to the example's size.
        out = tuple(v if isinstance(v, torch.SymInt) else int(v) for v in out)
    return out


def check_int(value, name, *, minimum=None):
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_channels(in_channels, out_channels, groups):
    """Positive ints, both channel counts divisible by groups (a conv's or transposed conv's)."""
    in_channels = check_int(in_channels, "in_channels", minimum=1)
    out_channels = check_int(out_channels, "out_channels", minimum=1)
    groups = check_int(groups, "groups", minimum=1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
        )
    return in_channels, out_channels, groups


def check_tensor(t, name, ndim, x=None):
    """t is a floating tensor of rank ndim; with x given, on x's device with x's dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if x is not None:
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}")
        if t.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but x has dtype {x.dtype}")


_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu")


def autocast_inputs(*tensors):
    """Under torch.autocast for the tensors' device, floating inputs in the autocast dtype, as
    convolutions get them (the ops require one dtype; autocast mixes them). Otherwise unchanged."""
    x = tensors[0]
    # Only device types with an autocast mode: torch >= 2.14 raises for others (meta, for shape checks).
    if (
        not isinstance(x, torch.Tensor)
        or x.device.type not in _AUTOCAST_DEVICES
        or not torch.is_autocast_enabled(x.device.type)
    ):
        return tensors
    dtype = torch.get_autocast_dtype(x.device.type)
    return tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in tensors)
