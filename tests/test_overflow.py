"""Geometries whose sizes or index arithmetic would overflow int64 (or fill memory): a clear error
naming the argument, raised before anything is allocated, never a crash. Through the public functions
(Python validation) and through torch.ops.fcn_kernels.* directly (the C++ host checks,
csrc/host/checks.h). Every case runs in one child process, so that a crash fails the cases it reached
instead of ending the test run. Tensors are tiny, or expanded views that own no memory."""

import json
import os
import subprocess
import sys

import pytest

BIG = 2**62
MAX = 2**63 - 1

# name: (expression, words of which one must appear in the message). `x`, `w` and friends are defined
# in the child (below); ops = torch.ops.fcn_kernels, F = fcn_kernels.
CASES = {
    "upsample stride 2**40": ("F.upsample_skip(x, w, stride=2**40, out_size=(1, 1))", ["stride"]),
    "upsample stride int64 max": (f"F.upsample_skip(x, w, stride={MAX}, out_size=(1, 1))", ["stride"]),
    "upsample stride 2**40 one axis": ("F.upsample_skip(x, w, stride=(1, 2**40), out_size=(1, 1))", ["stride"]),
    "upsample out_size 2**62": (f"F.upsample_skip(x, w, stride=2, out_size=({BIG}, 1))", ["out_size"]),
    "upsample out_size int64 max": (f"F.upsample_skip(x, w, stride=2, out_size=(1, {MAX}))", ["out_size"]),
    "upsample out_offset int64 max": (
        f"F.upsample_skip(x, w, stride=2, out_offset=({MAX}, 0), out_size=(1, 1))",
        ["out_offset"],
    ),
    "upsample out_offset + out_size wraps": (
        f"F.upsample_skip(x, w, stride=2, out_offset=({MAX}, 0), out_size=(2, 1))",
        ["out_offset", "out_size"],
    ),
    "upsample skip_offset int64 max": (
        f"F.upsample_skip(x, w, skip=s, stride=2, out_size=(2, 2), skip_offset=(0, {MAX}))",
        ["skip_offset"],
    ),
    "upsample kernel 2**62 wide": (f"F.upsample_skip(x, big(1, 1, 1, {BIG}), stride=1, out_size=(1, 1))", ["weight"]),
    "upsample kernel 2**40 default out_size": ("F.upsample_skip(x, big(1, 1, 1, 2**40), stride=2**21)", ["stride"]),
    "upsample huge default output": ("F.upsample_skip(x, w, stride=2**30)", ["out_size", "stride"]),
    "upsample x 2**62 wide": (f"F.upsample_skip(big(1, 1, 1, {BIG}), w, stride=1, out_size=(1, 1))", ["x"]),
    "upsample groups int64 max": (f"F.upsample_skip(x, w, stride=2, groups={MAX})", ["groups"]),
    "op upsample stride 2**40": (
        "ops.upsample_skip(x, w, None, None, [2**40, 1], 1, [0, 0], [1, 1], [0, 0])",
        ["stride"],
    ),
    "op upsample stride int64 max": (
        f"ops.upsample_skip(x, w, None, None, [{MAX}, {MAX}], 1, [0, 0], [1, 1], [0, 0])",
        ["stride"],
    ),
    "op upsample out_size 2**62": (
        f"ops.upsample_skip(x, w, None, None, [2, 2], 1, [0, 0], [{BIG}, 1], [0, 0])",
        ["out_size", "crop"],
    ),
    "op upsample out_offset wraps": (
        f"ops.upsample_skip(x, w, None, None, [2, 2], 1, [{MAX}, 0], [2, 1], [0, 0])",
        ["out_offset", "crop"],
    ),
    "op upsample skip_offset wraps": (
        f"ops.upsample_skip(x, w, None, s, [2, 2], 1, [0, 0], [2, 2], [{MAX}, 0])",
        ["skip_offset", "skip"],
    ),
    "op upsample kernel 2**62": (
        f"ops.upsample_skip(x, big(1, 1, 1, {BIG}), None, None, [1, 1], 1, [0, 0], [1, 1], [0, 0])",
        ["weight"],
    ),
    "op upsample channels 2**57": (
        "ops.upsample_skip(big(1, 2**57, 1, 1), big(2**57, 16, 1, 1), None, None, [1, 1], 2**57, [0, 0], "
        "[1, 1], [0, 0])",
        ["weight"],
    ),
    "op upsample backward_input size 2**62": (
        f"ops.upsample_skip_backward_input(go, w, [1, 1, {BIG}, {BIG}], [1, 1], 1, [0, 0])",
        ["x", "stride"],
    ),
    "op upsample backward_weight size 2**62": (
        f"ops.upsample_skip_backward_weight(go, x, [1, 1, 1, {BIG}], [1, 1], 1, [0, 0])",
        ["weight"],
    ),
    "op upsample backward stride int64 max": (
        f"ops.upsample_skip_backward_input(go, w, [1, 1, 3, 3], [{MAX}, 1], 1, [0, 0])",
        ["stride"],
    ),
    "rarefied rarefaction 2**62": (f"F.rarefied_conv2d(x, w3, rarefaction={BIG})", ["rarefaction"]),
    "rarefied rarefaction int64 max, 1x1": (f"F.rarefied_conv2d(x, w, rarefaction={MAX})", ["rarefaction"]),
    "rarefied padding 2**62": (f"F.rarefied_conv2d(x, w, padding={BIG})", ["padding"]),
    "rarefied padding int64 max": (f"F.rarefied_conv2d(x, w, padding={MAX})", ["padding"]),
    "rarefied padding 2**30 output": ("F.rarefied_conv2d(x, w, padding=2**30)", ["padding"]),
    "rarefied padding + rarefaction padded copy": (
        "F.rarefied_conv2d(x, w3, padding=2**29, rarefaction=2**29)",
        ["padding"],
    ),
    "rarefied kernel 2**62 wide": (
        f"F.rarefied_conv2d(x, big(1, 1, 1, {BIG}), padding={BIG // 2})",
        ["weight", "padding"],
    ),
    "op rarefied rarefaction 2**62": (f"ops.rarefied_conv2d(x, w3, None, [{BIG}, 1], [0, 0], 1)", ["rarefaction"]),
    "op rarefied rarefaction int64 max": (
        f"ops.rarefied_conv2d(x, w, None, [{MAX}, {MAX}], [0, 0], 1)",
        ["rarefaction"],
    ),
    "op rarefied padding int64 max": (f"ops.rarefied_conv2d(x, w, None, [1, 1], [{MAX}, 0], 1)", ["padding"]),
    "op rarefied padding 2**30": ("ops.rarefied_conv2d(x, w, None, [1, 1], [2**30, 2**30], 1)", ["output"]),
    "op rarefied padded copy": ("ops.rarefied_conv2d(x, w3, None, [2**29, 2**29], [2**29, 2**29], 1)", ["padded"]),
    "op rarefied groups int64 max": (f"ops.rarefied_conv2d(x, w, None, [1, 1], [0, 0], {MAX})", ["groups"]),
    "op rarefied backward_input size 2**62": (
        f"ops.rarefied_conv2d_backward_input(go, w, [1, 1, {BIG}, {BIG}], [1, 1], [0, 0], 1)",
        ["x"],
    ),
    "op rarefied backward_weight rarefaction": (
        f"ops.rarefied_conv2d_backward_weight(go, x, [1, 1, 3, 3], [{MAX}, 1], [0, 0], 1)",
        ["rarefaction"],
    ),
}

CHILD = r"""
import json, sys, torch
import fcn_kernels as F
ops = torch.ops.fcn_kernels
x = torch.randn(1, 1, 3, 3)
w = torch.randn(1, 1, 1, 1)
w3 = torch.randn(1, 1, 3, 3)
s = torch.randn(1, 1, 4, 4)
go = torch.randn(1, 1, 3, 3)

def big(*shape):
    # A tensor of any shape that owns one element (an expanded view).
    return torch.ones(1, 1, 1, 1).expand(shape)

for name, expr in json.loads(sys.argv[1]).items():
    print(json.dumps({"start": name}), flush=True)
    try:
        eval(expr)
        result = {"name": name, "raised": None}
    except Exception as exc:
        result = {"name": name, "raised": type(exc).__name__, "message": str(exc).splitlines()[0]}
    print(json.dumps(result), flush=True)
"""


@pytest.fixture(scope="module")
def child_results():
    cases = {name: expr for name, (expr, _) in CASES.items()}
    env = dict(os.environ)
    env.pop("FCN_KERNELS_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cases)], capture_output=True, text=True, env=env, timeout=600
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = {r["name"]: r for r in lines if "name" in r}
    started = [r["start"] for r in lines if "start" in r]
    return proc, results, started


@pytest.mark.parametrize("name", list(CASES))
def test_clear_error_before_allocation(child_results, name):
    proc, results, started = child_results
    if name not in results:
        crashed = started[-1] if started else None
        pytest.fail(
            f"the child process ended (exit {proc.returncode}) "
            f"{'during ' + repr(crashed) if crashed else 'before the cases'}: {proc.stderr[-3000:]}"
        )
    r = results[name]
    assert r["raised"] in ("ValueError", "TypeError", "RuntimeError"), r
    words = CASES[name][1]
    assert any(word in r["message"] for word in words), f"the message names none of {words}: {r['message']}"
    assert "alloc" not in r["message"], f"an allocation was attempted: {r['message']}"
