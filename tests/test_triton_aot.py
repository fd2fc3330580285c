"""Ahead-of-time compilation of every Triton kernel and autotune config for sm_80 and sm_90 (no GPU
needed: `triton.compile` with a GPUTarget and the ptxas inside the triton wheel), failing on register
spills, on shared memory beyond the architecture's limit, or on any compile error. The table of
registers and shared memory is printed (`pytest -s` or `-rA` shows it; `python -m fcn_kernels.triton.aot`
prints the same)."""

import os

import pytest

if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("AOT compilation needs the real triton.jit (TRITON_INTERPRET=1 is set)", allow_module_level=True)
pytest.importorskip("triton")

from fcn_kernels.triton import aot


@pytest.mark.parametrize("arch", aot.ARCHS, ids=[f"sm_{a}" for a in aot.ARCHS])
def test_every_kernel_and_config_compiles_without_spills(arch):
    rows = aot.compile_all(archs=(arch,))
    table = aot.format_table(rows)
    print(f"\n{table}")
    assert {r.kernel for r in rows} == set(aot.kernels()), "a kernel has no AOT specialisation"
    bad = [r for r in rows if not r.ok]
    assert not bad, f"{len(bad)} of {len(rows)} compilations failed, spilled or exceed shared memory:\n{table}"


def test_long_tap_loops_compile_as_runtime_loops(tmp_path, monkeypatch):
    """Stride 1 with 16 x 16 and 64 x 64 filters (256 and 4096 taps a phase): past utils.MAX_UNROLLED_TAPS
    the tap loops stay runtime loops, so these compile in about the time of FCN's 2 x 2 taps (about a
    second; an empty Triton cache, so that they are compiled). Fully unrolled, the 16 x 16 depthwise
    forward spilled 6.5 KB and the dense FMA forward compiled for minutes."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    rows = [aot.compile_one(*c) for c in aot.tap_cases((16, 64))]
    table = aot.format_table(rows)
    print(f"\n{table}")
    assert {r.kernel for r in rows} == {"fwd_dw", "fwd_dense_dot", "fwd_dense_fma", "argmax", *aot.ce.AUTOTUNED}
    bad = [r for r in rows if not r.ok or r.seconds > 60]
    assert not bad, f"{len(bad)} of {len(rows)} failed, spilled or took over a minute:\n{table}"
