"""Bad input to upsample_skip: a clear error naming the argument and sizes, never a crash."""

import pytest
import torch

import fcn_kernels

needs_cpu = pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="_C not built")


def args(**over):
    a = dict(
        x=torch.randn(2, 4, 5, 6),
        weight=torch.randn(4, 3, 4, 4),
        bias=torch.randn(6),
        skip=torch.randn(2, 6, 16, 18),
        stride=2,
        groups=2,
        out_offset=(1, 2),
        out_size=(9, 10),
        skip_offset=(3, 4),
    )
    a.update(over)
    return a


BAD = {
    "x rank": (dict(x=torch.randn(4, 5, 6)), ValueError, r"x must be 4-D.*\(4, 5, 6\)"),
    "weight rank": (dict(weight=torch.randn(4, 3, 4)), ValueError, r"weight must be 4-D"),
    "channels": (dict(weight=torch.randn(5, 3, 4, 4)), ValueError, r"weight.shape\[0\] \(5\).*channels \(4\)"),
    "groups": (dict(groups=3), ValueError, r"channels \(4\).*divisible by groups \(3\)"),
    "groups zero": (dict(groups=0), ValueError, r"groups must be >= 1"),
    "groups float": (dict(groups=2.0), TypeError, r"groups must be an int"),
    "stride zero": (dict(stride=0), ValueError, r"stride must be >= 1"),
    "stride triple": (dict(stride=(1, 2, 3)), TypeError, r"stride must be an int or a pair"),
    "negative out_offset": (dict(out_offset=(-1, 0)), ValueError, r"out_offset must be >= 0"),
    "negative skip_offset": (dict(skip_offset=(0, -2)), ValueError, r"skip_offset must be >= 0"),
    "crop past end": (dict(out_size=(12, 10)), ValueError, r"crop window.*\(12, 10\).*full.*\(12, 14\)"),
    "offset past end": (dict(out_offset=(12, 0), out_size=(1, 1)), ValueError, r"exceeds the full"),
    "skip window": (dict(skip_offset=(8, 0)), ValueError, r"skip window.*\(8, 0\).*\(16, 18\)"),
    "skip channels": (dict(skip=torch.randn(2, 5, 16, 18)), ValueError, r"skip must have shape \(2, 6, Hs, Ws\)"),
    "skip batch": (dict(skip=torch.randn(1, 6, 16, 18)), ValueError, r"skip must have shape \(2, 6"),
    "bias size": (dict(bias=torch.randn(4)), ValueError, r"bias must have shape \(6,\), got \(4,\)"),
    "int x": (dict(x=torch.ones(2, 4, 5, 6, dtype=torch.int64)), TypeError, r"x must be a floating-point"),
    "mixed dtype": (
        dict(weight=torch.randn(4, 3, 4, 4, dtype=torch.float64)),
        TypeError,
        r"weight has dtype torch.float64 but x has dtype torch.float32",
    ),
    "mixed device": (dict(skip=torch.randn(2, 6, 16, 18, device="meta")), ValueError, r"skip is on meta"),
    "not a tensor": (dict(x=[[1.0]]), TypeError, r"x must be a torch.Tensor"),
    "empty spatial": (dict(x=torch.randn(2, 4, 0, 6)), ValueError, r"non-empty spatial"),
}


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=needs_cpu)])
@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_a_clear_error(name, backend):
    over, exc, pattern = BAD[name]
    a = args(**over)
    x, w, b, s = a.pop("x"), a.pop("weight"), a.pop("bias"), a.pop("skip")
    with pytest.raises(exc, match=pattern):
        fcn_kernels.upsample_skip(x, w, b, s, backend=backend, **a)


def test_good_args_pass():
    a = args()
    y = fcn_kernels.upsample_skip(a.pop("x"), a.pop("weight"), a.pop("bias"), a.pop("skip"), **a)
    assert y.shape == (2, 6, 9, 10)


@needs_cpu
@pytest.mark.parametrize(
    "call",
    [
        lambda o: o.upsample_skip(
            torch.randn(2, 4, 5), torch.randn(4, 1, 4, 4), None, None, [2, 2], 4, [0, 0], [5, 5], [0, 0]
        ),
        lambda o: o.upsample_skip(
            torch.randn(1, 4, 5, 5), torch.randn(4, 1, 4, 4), None, None, [2, 2], 4, [0, 0], [99, 5], [0, 0]
        ),
        lambda o: o.upsample_skip(
            torch.randn(1, 4, 5, 5),
            torch.randn(4, 1, 4, 4),
            None,
            torch.randn(1, 4, 3, 3),
            [2, 2],
            4,
            [0, 0],
            [5, 5],
            [0, 0],
        ),
        lambda o: o.upsample_skip(
            torch.randn(1, 4, 5, 5), torch.randn(4, 1, 4, 4), None, None, [0, 2], 4, [0, 0], [5, 5], [0, 0]
        ),
        lambda o: o.upsample_skip_backward_input(
            torch.randn(1, 4, 5, 5), torch.randn(4, 1, 4, 4), [1, 4, 1, 1], [2, 2], 4, [0, 0]
        ),
        lambda o: o.upsample_skip_backward_weight(
            torch.randn(1, 3, 5, 5), torch.randn(1, 4, 5, 5), [4, 1, 4, 4], [2, 2], 4, [0, 0]
        ),
    ],
    ids=["rank", "crop", "skip", "stride", "bwd-input-size", "bwd-channels"],
)
def test_direct_op_calls_are_checked_in_cpp(call):
    with pytest.raises(RuntimeError, match="upsample_skip"):
        call(torch.ops.fcn_kernels)
