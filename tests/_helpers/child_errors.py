"""Calls that must fail cleanly, each evaluated in one child process, so that a crash fails the test instead of
ending the run (the fused losses' overflowing sizes)."""

import json
import os
import subprocess
import sys

_CHILD = r"""
import json, sys, torch
import fcn_kernels as F
ops = torch.ops.fcn_kernels

def big_target(*shape):
    return torch.zeros(1, 1, 1, dtype=torch.long).expand(shape)  # owns one element

exec(sys.argv[1])
for name, expr in json.loads(sys.argv[2]).items():
    try:
        eval(expr)
        print(json.dumps({"name": name, "raised": None}), flush=True)
    except Exception as exc:
        print(json.dumps({"name": name, "raised": type(exc).__name__, "message": str(exc).splitlines()[0]}),
              flush=True)
"""


def assert_clear_errors(setup, cases):
    """Each cases[name] = (expression, words), evaluated in a child after `setup` (code defining its tensors; F is
    fcn_kernels, ops torch.ops.fcn_kernels, big_target(*shape) a long tensor owning one element), raises a
    ValueError, TypeError or RuntimeError whose message names one of `words` and tells of no allocation."""
    env = {k: v for k, v in os.environ.items() if k != "FCN_KERNELS_BACKEND"}
    exprs = json.dumps({k: e for k, (e, _) in cases.items()})
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, setup, exprs], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    results = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(results) == set(cases), proc.stderr[-3000:]
    for name, (_, words) in cases.items():
        r = results[name]
        assert r["raised"] in ("ValueError", "TypeError", "RuntimeError"), (name, r)
        assert any(word in r["message"] for word in words), (name, r["message"])
        assert "alloc" not in r["message"], (name, r["message"])
