"""Hypothesis strategies over the ops' whole argument space, and the two properties every draw must
have: a valid draw equals the float64 reference (within tolerances.py's bounds), an invalid one
raises ValueError, TypeError or RuntimeError whose message names the argument. Used by
tests/test_property.py (cpu backend) and tests/triton/test_triton_property.py (small=True)."""

import contextlib
import os

import torch
from hypothesis import note, strategies as st

import fcn_kernels
from fcn_kernels import reference

from .rarefied_cases import Case as RarefiedCase, check_against_reference as check_rarefied_against_reference
from .tolerances import error_bound
from .upsample_cases import Case, check_against_reference, make_inputs, shape_fields

DTYPES = st.sampled_from([torch.float64, torch.float32, torch.bfloat16, torch.float16])
SEEDS = st.integers(0, 2**31 - 1)

# Same values, other memory layouts (4-D tensors; the rest pass unchanged).
LAYOUTS = {
    "contiguous": lambda t: t,
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t,
    "strided": lambda t: torch.stack([t, torch.zeros_like(t)], -1).select(-1, 0),
    "transposed": lambda t: t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() == 4 else t,
}
LAYOUT_NAMES = st.sampled_from(sorted(LAYOUTS))
# The draws besides the case of a test that compares a valid case with the reference: @given(case=..., **DRAWS)
DRAWS = dict(dtype=DTYPES, layout=LAYOUT_NAMES, seed=SEEDS)


def _channels(draw, small, wide_min):
    """(groups, in channels per group, out channels per group): depthwise, channel multipliers, small
    dense groups, and (not small) groups wide enough for the CPU kernels' GEMM paths."""
    kinds = ["depthwise", "multiplier", "dense"] + ([] if small else ["wide"])
    kind = draw(st.sampled_from(kinds))
    if kind == "depthwise":
        return draw(st.integers(1, 3 if small else 5)), 1, 1
    if kind == "multiplier":
        return draw(st.integers(1, 3)), 1, draw(st.integers(2, 3))
    if kind == "dense":
        return draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return draw(st.integers(1, 2)), draw(st.integers(wide_min, wide_min + 2)), draw(st.integers(wide_min, wide_min + 2))


@st.composite
def upsample_cases(draw, small=False):
    """A valid upsample_skip geometry: every stride (the CPU kernel's compile-time ones 1, 2, 4, 8, 16,
    32 and others), kernels smaller and larger than the stride, crop windows anywhere in the full
    output (empty, at the start, touching the end), default out_size, skip or not, bias or not, batch 0."""
    groups, cin_g, cout_g = _channels(draw, small, 4)
    strides = st.integers(1, 4) if small else st.one_of(st.integers(1, 9), st.sampled_from([16, 32]))
    stride = (draw(strides), draw(strides))
    K = tuple(draw(st.integers(1, 2 * s + 2)) for s in stride)
    H, W = (draw(st.integers(1, 3 if small else 6)) for _ in range(2))
    full = ((H - 1) * stride[0] + K[0], (W - 1) * stride[1] + K[1])
    off, size = [], []
    for f in full:
        o = draw(st.integers(0, f))
        off.append(o)
        size.append(draw(st.one_of(st.just(f - o), st.integers(0, f - o))))
    default_size = all(s == f - o for s, f, o in zip(size, full, off)) and draw(st.booleans())
    skip_hw, skip_off = None, (0, 0)
    if draw(st.booleans()):
        skip_off = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        skip_hw = tuple(s + o + draw(st.integers(0, 3)) for s, o in zip(size, skip_off))
    return Case(
        N=draw(st.integers(0, 2)),
        **shape_fields(groups, cin_g, cout_g, H, W, K),
        stride=stride,
        out_offset=tuple(off),
        out_size=None if default_size else tuple(size),
        skip_offset=skip_off,
        skip_hw=skip_hw,
        bias=draw(st.booleans()),
    )


def check_upsample_skip(case, backend, dtype, layout):
    check_against_reference(case, backend, dtype, transform=LAYOUTS[layout])


def check_upsample_argmax(case, backend, dtype, layout):
    """Labels of the right shape whose exact (float64) score is within the bound of the best exact
    score: a label may differ from the reference's only where two classes are that close."""
    inputs = [LAYOUTS[layout](t) if t is not None else None for t in make_inputs(case, dtype)]
    labels = fcn_kernels.upsample_argmax(*inputs, backend=backend, **case.kwargs())
    exact = reference.upsample_skip(*[t.double() if t is not None else None for t in inputs], **case.kwargs())
    abs_sum = reference.upsample_skip(*[t.double().abs() if t is not None else None for t in inputs], **case.kwargs())
    assert labels.dtype == torch.int64 and labels.shape == (exact.shape[0],) + exact.shape[2:], labels.shape
    if labels.numel() == 0:
        return
    bound = error_bound(exact, abs_sum, case.terms(), dtype)
    chosen = exact.gather(1, labels.unsqueeze(1)).squeeze(1)
    best, where = exact.max(1)
    slack = bound.gather(1, labels.unsqueeze(1)).squeeze(1) + bound.gather(1, where.unsqueeze(1)).squeeze(1)
    assert bool((best - chosen <= slack).all()), f"labels off by more than the bound for {case}"


@st.composite
def rarefied_cases(draw, small=False):
    """A valid rarefied_conv2d geometry: depthwise, channel multipliers, dense and (not small) GEMM-wide
    groups; rarefied kernels from just fitting the padded input to far smaller; batch 0."""
    groups, cin_g, cout_g = _channels(draw, small, 8)
    K = tuple(draw(st.integers(1, 3 if small else 5)) for _ in range(2))
    rarefaction = tuple(draw(st.integers(1, 3 if small else 8)) for _ in range(2))
    padding = tuple(draw(st.integers(0, 2 * r + 1)) for r in rarefaction)
    # the input from the smallest that the rarefied kernel fits (output size 1) up
    H, W = (
        max(1, (k - 1) * r + 1 - 2 * p) + draw(st.integers(0, 3 if small else 6))
        for k, r, p in zip(K, rarefaction, padding)
    )
    return RarefiedCase(
        N=draw(st.integers(0, 2)),
        **shape_fields(groups, cin_g, cout_g, H, W, K),
        rarefaction=rarefaction,
        padding=padding,
        bias=draw(st.booleans()),
    )


@contextlib.contextmanager
def rarefied_path(path):
    """Forces the CPU kernel's path (direct or gemm; None: its own choice) for the duration."""
    var = "FCN_KERNELS_RAREFIED_CONV_PATH"
    old = os.environ.pop(var, None)
    if path is not None:
        os.environ[var] = path
    try:
        yield
    finally:
        os.environ.pop(var, None)
        if old is not None:
            os.environ[var] = old


def check_rarefied_conv2d(case, backend, dtype, layout):
    check_rarefied_against_reference(case, backend, dtype, transform=LAYOUTS[layout])


# ---- invalid draws: one argument broken at a time ---------------------------------------------------
#
# Each mutation takes the call's arguments (a dict) and a draw function, breaks one argument, and
# returns the words of which the error message must contain one.


def _other_dtype(t):
    return t.to(torch.float32 if t.dtype == torch.float64 else torch.float64)


def _upsample_full(a):
    (h, w), (kh, kw), (sh, sw) = a["x"].shape[2:], a["weight"].shape[2:], a["stride"]
    return (h - 1) * sh + kh, (w - 1) * sw + kw


def _with_skip(a):
    if a["skip"] is None:
        n, cout = a["x"].shape[0], a["weight"].shape[1] * a["groups"]
        size = a["out_size"] or tuple(f - o for f, o in zip(_upsample_full(a), a["out_offset"]))
        a["skip"] = torch.randn(
            n, cout, size[0] + a["skip_offset"][0], size[1] + a["skip_offset"][1], dtype=a["x"].dtype
        )
    return a["skip"]


def _crop(a):
    return a["out_size"] or tuple(f - o for f, o in zip(_upsample_full(a), a["out_offset"]))


def _set(key, value, words):
    def mutate(a, draw):
        a[key] = value(a, draw) if callable(value) else value
        return words

    return mutate


def _skip_offset_past_end(a, draw):
    skip, crop = _with_skip(a), _crop(a)
    ax = draw(st.integers(0, 1))
    off = list(a["skip_offset"])
    off[ax] = skip.shape[2 + ax] - crop[ax] + draw(st.integers(1, 3))
    return tuple(off)


def _window_past_end(key):
    def value(a, draw):
        full, ax = _upsample_full(a), draw(st.integers(0, 1))
        off, size = list(a["out_offset"]), list(_crop(a))
        if key == "out_size":
            size[ax] = full[ax] - off[ax] + draw(st.integers(1, 3))
            a["out_size"] = tuple(size)
        else:
            a["out_size"] = tuple(size)
            off[ax] = full[ax] - size[ax] + draw(st.integers(1, 3))
            a["out_offset"] = tuple(off)
        return a[key]

    return value


def _bad_pair(minimum):
    return lambda a, draw: (draw(st.integers(-3, minimum - 1)), draw(st.integers(minimum, 3)))[
        :: draw(st.sampled_from([1, -1]))
    ]


def _huge(a, draw):
    return (draw(st.integers(2**61, 2**63 - 1)), 1)


UPSAMPLE_MUTATIONS = {
    "stride < 1": _set("stride", _bad_pair(1), ["stride"]),
    "stride float": _set("stride", 2.0, ["stride"]),
    "stride huge": _set("stride", _huge, ["stride"]),
    "groups 0": _set("groups", 0, ["groups"]),
    "groups not dividing x's channels": _set(
        "groups", lambda a, draw: a["x"].shape[1] + draw(st.integers(1, 3)), ["groups"]
    ),
    "out_offset < 0": _set("out_offset", _bad_pair(0), ["out_offset"]),
    "out_offset past the end": _set("out_offset", _window_past_end("out_offset"), ["out_offset"]),
    "out_offset huge": _set("out_offset", _huge, ["out_offset"]),
    "out_size < 0": _set("out_size", lambda a, draw: (-1, 1)[:: draw(st.sampled_from([1, -1]))], ["out_size"]),
    "out_size past the end": _set("out_size", _window_past_end("out_size"), ["out_size"]),
    "out_size huge": _set("out_size", _huge, ["out_size"]),
    "skip_offset < 0": _set("skip_offset", lambda a, draw: (_with_skip(a), _bad_pair(0)(a, draw))[1], ["skip_offset"]),
    "skip window past the end": _set("skip_offset", _skip_offset_past_end, ["skip_offset"]),
    "skip channels": _set(
        "skip",
        lambda a, draw: torch.randn(
            a["x"].shape[0], a["weight"].shape[1] * a["groups"] + 1, *_with_skip(a).shape[2:], dtype=a["x"].dtype
        ),
        ["skip"],
    ),
    "skip 3-D": _set("skip", lambda a, draw: _with_skip(a).sum(0), ["skip"]),
    "skip dtype": _set("skip", lambda a, draw: _other_dtype(_with_skip(a)), ["skip"]),
    "bias shape": _set(
        "bias", lambda a, draw: torch.randn(a["weight"].shape[1] * a["groups"] + 1, dtype=a["x"].dtype), ["bias"]
    ),
    "weight in-channels": _set(
        "weight",
        lambda a, draw: torch.randn(a["x"].shape[1] + 1, *a["weight"].shape[1:], dtype=a["x"].dtype),
        ["weight"],
    ),
    "weight dtype": _set("weight", lambda a, draw: _other_dtype(a["weight"]), ["weight"]),
    "weight 3-D": _set("weight", lambda a, draw: a["weight"][0], ["weight"]),
    "x integer": _set("x", lambda a, draw: a["x"].long(), ["x"]),
    "x 3-D": _set("x", lambda a, draw: a["x"].sum(0), ["x"]),
    "x empty spatial": _set("x", lambda a, draw: a["x"][:, :, :0], ["x"]),
}


def upsample_arguments(case, dtype):
    x, w, b, skip = make_inputs(case, dtype)
    return dict(x=x, weight=w, bias=b, skip=skip, **case.kwargs())


def as_op_arguments(a, case):
    """The public call's arguments as torch.ops.fcn_kernels.upsample_skip takes them: int pairs as lists,
    out_size explicit (the unbroken case's where the call left it to the default)."""
    pairs = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    out_size = a["out_size"] if a["out_size"] is not None else case.crop
    return (
        a["x"],
        a["weight"],
        a["bias"],
        a["skip"],
        pairs(a["stride"]),
        a["groups"],
        pairs(a["out_offset"]),
        pairs(out_size),
        pairs(a["skip_offset"]),
    )


def _kernel_past_the_padded_input(a, draw):
    # A 2-tap kernel (a 1-tap one has no extent) whose rarefaction spans the padded input or more.
    w = a["weight"]
    a["weight"] = torch.randn(*w.shape[:2], 2, 2, dtype=w.dtype)
    ax = draw(st.integers(0, 1))
    r = list(a["rarefaction"])
    r[ax] = a["x"].shape[2 + ax] + 2 * a["padding"][ax] + draw(st.integers(0, 3))
    a["rarefaction"] = tuple(r)
    return ["rarefaction", "padding"]


RAREFIED_MUTATIONS = {
    "rarefaction < 1": _set("rarefaction", _bad_pair(1), ["rarefaction"]),
    "rarefaction float": _set("rarefaction", 2.0, ["rarefaction"]),
    "rarefaction huge": _set("rarefaction", _huge, ["rarefaction"]),
    "rarefied kernel larger than the padded input": _kernel_past_the_padded_input,
    "padding < 0": _set("padding", _bad_pair(0), ["padding"]),
    "padding huge": _set("padding", _huge, ["padding"]),
    "groups 0": _set("groups", 0, ["groups"]),
    "groups not dividing x's channels": _set(
        "groups", lambda a, draw: a["x"].shape[1] + draw(st.integers(1, 3)), ["groups"]
    ),
    "weight in-channels": _set(
        "weight",
        lambda a, draw: torch.randn(
            a["weight"].shape[0], a["weight"].shape[1] + 1, *a["weight"].shape[2:], dtype=a["x"].dtype
        ),
        ["weight"],
    ),
    "weight dtype": _set("weight", lambda a, draw: _other_dtype(a["weight"]), ["weight"]),
    "weight 3-D": _set("weight", lambda a, draw: a["weight"][0], ["weight"]),
    "bias shape": _set("bias", lambda a, draw: torch.randn(a["weight"].shape[0] + 1, dtype=a["x"].dtype), ["bias"]),
    "x integer": _set("x", lambda a, draw: a["x"].long(), ["x"]),
    "x 3-D": _set("x", lambda a, draw: a["x"].sum(0), ["x"]),
    "x empty spatial": _set("x", lambda a, draw: a["x"][:, :, :0], ["x"]),
}


def rarefied_arguments(case, dtype):
    x, w, b = case.inputs(dtype)
    return dict(x=x, weight=w, bias=b, **case.kwargs())


def as_rarefied_op_arguments(a):
    pairs = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    return a["x"], a["weight"], a["bias"], pairs(a["rarefaction"]), pairs(a["padding"]), a["groups"]


def expect_error(call, words, what):
    """call() raises ValueError, TypeError or RuntimeError whose message contains one of `words`;
    anything else (no error, another exception, a crash) fails."""
    try:
        call()
    except (ValueError, TypeError, RuntimeError) as exc:
        message = str(exc)
        assert any(w in message for w in words), f"{what}: {type(exc).__name__} names none of {words}: {message}"
        return
    raise AssertionError(f"{what}: no error (expected one naming {words})")


# op: (its case strategy, the mutations that break one argument, the arguments of a case, the positional
# arguments of torch.ops.fcn_kernels.<op> (None: the C++ op is not called on its own))
_INVALID = {
    "upsample_skip": (upsample_cases, UPSAMPLE_MUTATIONS, upsample_arguments, as_op_arguments),
    "upsample_argmax": (upsample_cases, UPSAMPLE_MUTATIONS, upsample_arguments, None),
    "rarefied_conv2d": (
        rarefied_cases,
        RAREFIED_MUTATIONS,
        rarefied_arguments,
        lambda a, case: as_rarefied_op_arguments(a),
    ),
}


def check_invalid_is_named(op, backend, dtype, seed, data, small=False):
    """fcn_kernels.<op> on `backend`, given a drawn case's arguments (`dtype` inputs) broken by a drawn mutation,
    raises an error naming the broken argument; on the cpu backend so does the C++ op called on its own (no
    Python validation before it)."""
    cases, mutations, arguments, op_arguments = _INVALID[op]
    case = data.draw(cases(small=small), label="case")
    mutation = data.draw(st.sampled_from(sorted(mutations)), label="mutation")
    torch.manual_seed(seed)
    a = arguments(case, dtype)
    words = mutations[mutation](a, data.draw)
    note(f"{mutation}: {[(k, tuple(v.shape) if isinstance(v, torch.Tensor) else v) for k, v in a.items()]}")
    expect_error(lambda: getattr(fcn_kernels, op)(**a, backend=backend), words, f"{op} with {mutation}")
    if backend == "cpu" and op_arguments is not None:
        direct = getattr(torch.ops.fcn_kernels, op)
        expect_error(lambda: direct(*op_arguments(a, case)), words, f"torch.ops.fcn_kernels.{op} with {mutation}")
