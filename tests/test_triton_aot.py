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

from fcn_kernels.triton import aot  # noqa: E402


@pytest.mark.parametrize("arch", aot.ARCHS, ids=[f"sm_{a}" for a in aot.ARCHS])
def test_every_kernel_and_config_compiles_without_spills(arch):
    rows = aot.compile_all(archs=(arch,))
    table = aot.format_table(rows)
    print(f"\n{table}")
    assert {r.kernel for r in rows} == set(aot.kernels()), "a kernel has no AOT specialisation"
    bad = [r for r in rows if not r.ok]
    assert not bad, f"{len(bad)} of {len(rows)} compilations failed, spilled or exceed shared memory:\n{table}"
