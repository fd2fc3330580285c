"""Ahead-of-time compilation of every Triton kernel and autotune config for sm_80 and sm_90, without a GPU.

    python -m fcn_kernels.triton.aot [--arch 80 90] [--all-variants] [--taps K ...] [--json FILE]

prints registers per thread, spill bytes and shared memory per kernel, specialisation and config, and
exits non-zero when any of them spills registers or fails to compile. `triton.compile` with a
`GPUTarget` runs the whole pipeline down to a cubin with the ptxas that ships in the triton wheel; the
register and spill counts come from `ptxas -v` on the same PTX (the driver reports them only when a
kernel is loaded on a GPU).

Each kernel is compiled at its FCN specialisation (float32, 21-channel heads: 2x2 taps per
phase, 32-wide channel blocks for the dot kernels, the widest FMA blocks); --all-variants adds
bfloat16 (and TF32 dots) as well. rarefied_conv2d's kernels (names prefixed "rc_") are compiled at
their largest channel blocks (the launcher's caps: 16 x 32 for float32 IEEE dots; with
--all-variants, 32 x 64 for the tensor-core dots, bfloat16 and TF32; 16 x 16 for the FMA loops),
with bias, and Kw padded to 4 in the depthwise weight gradient.
upsample_cross_entropy's kernels ("ce_") are compiled at FCN-8s's upscore8 (2 x 2 taps a phase, a skip;
grad_x's and grad_weight's 16 x 16 taps as lanes).

--taps K compiles the kernels whose tap loops have a compile-time trip count (upsample_skip's forwards)
at stride 1 with a K x K filter (K * K taps a phase), each kernel's first config only, and reports the
compile time: tap loops past utils.MAX_UNROLLED_TAPS are runtime loops, so K = 16 or 64 must compile
about as fast as FCN's 2 x 2 taps.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

if os.environ.get("TRITON_INTERPRET") == "1":  # the interpreter replaces @triton.jit: nothing to compile
    raise ImportError("fcn_kernels.triton.aot compiles kernels: unset TRITON_INTERPRET")

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

from . import (
    bias_grad as bg,
    interpolate_argmax as ia,
    interpolate_cross_entropy as ice,
    rarefied_conv2d as rc,
    upsample_argmax as ua,
    upsample_cross_entropy as ce,
    upsample_skip as us,
)

ARCHS = (80, 90)
# the most dynamic shared memory one block may use (opt-in), bytes
MAX_SHARED = {80: 166912, 90: 232448}
_TL = {"fp32": tl.float32, "bf16": tl.bfloat16, "fp16": tl.float16, "fp64": tl.float64}


@dataclass
class Variant:
    label: str
    dtype: str  # element type of the tensor arguments ("part_ptr" is always float32)
    constexprs: dict  # the kernel's constexprs other than the autotuned block sizes
    pointers: dict = field(default_factory=dict)  # pointer arguments of another element type than dtype's


RC_PREFIX = "rc_"


def _rc_variants(name):
    """(default, extra) variants of rarefied_conv2d's kernel `name` (without the prefix)."""
    if name in ("fwd_dw", "bwd_input_dw", "bwd_weight_dw"):
        base = dict(ACC=tl.float32)
        if name == "fwd_dw":
            base["HAS_BIAS"] = True
        if name == "bwd_weight_dw":
            base["KWP"] = 4
        return [Variant("fp32", "fp32", base)], [Variant("bf16", "bf16", dict(base))]
    if name.split("_dense_")[0] in ("fwd", "bwd_input", "bwd_weight") and name.endswith(("_dot", "_fma")):
        dot = name.endswith("_dot")
        base = dict(USE_DOT=dot, DOT_F32=False, ACC=tl.float32, BIG=False)
        if name.startswith("fwd"):
            base["HAS_BIAS"] = True

        def variant(dtype, prec, ci, co):
            label = f"{'tf32' if prec == 'tf32' else dtype} c{ci}x{co}"
            return Variant(label, dtype, dict(base, DOT_PREC=prec, BLOCK_CI=ci, BLOCK_CO=co))

        if not dot:
            c = rc.FMA_MAX_C
            return [variant("fp32", "ieee", c, c)], [variant("bf16", "ieee", c, c)]
        wide = (rc.DOT_MAX_CI, rc.DOT_MAX_CO)  # tensor-core dots
        return [variant("fp32", "ieee", rc.IEEE_MAX_CI, rc.IEEE_MAX_CO)], [
            variant("bf16", "ieee", *wide),
            variant("fp32", "tf32", *wide),
        ]
    raise KeyError(f"no AOT specialisation for kernel {RC_PREFIX + name!r}: add one to fcn_kernels.triton.aot")


def _variants(name, all_variants):
    fp32_dot, bf16_dot = "ieee", "ieee"
    if name.startswith(RC_PREFIX):
        out, extra = _rc_variants(name[len(RC_PREFIX) :])
        return out + (extra if all_variants else [])
    if name == "fwd_dw":
        base = dict(TH=2, TW=2, HAS_BIAS=False, HAS_SKIP=True)
        out = [Variant("fp32", "fp32", dict(base, ACC=tl.float32))]
        extra = [Variant("bf16", "bf16", dict(base, ACC=tl.float32))]
    elif name.startswith("fwd_dense") or name.startswith("bwd_input_dense") or name.startswith("bwd_weight_dense"):
        dot = name.endswith("_dot")
        cb = 32 if dot else 8
        base = dict(USE_DOT=dot, DOT_F32=False, ACC=tl.float32, BIG=False)
        if name.startswith("fwd"):
            base.update(TH=2, TW=2, HAS_BIAS=False, HAS_SKIP=True)
        out = [Variant(f"fp32 c{cb}", "fp32", dict(base, DOT_PREC=fp32_dot, BLOCK_CI=cb, BLOCK_CO=cb))]
        extra = [Variant(f"bf16 c{cb}", "bf16", dict(base, DOT_PREC=bf16_dot, BLOCK_CI=cb, BLOCK_CO=cb))]
        if dot:
            extra.append(Variant("tf32 c32", "fp32", dict(base, DOT_PREC="tf32", BLOCK_CI=cb, BLOCK_CO=cb)))
    elif name == "bwd_input_dw":
        out = [Variant("fp32", "fp32", dict(ACC=tl.float32))]
        extra = [Variant("bf16", "bf16", dict(ACC=tl.float32))]
    elif name == "bwd_weight_dw":
        base = dict(TW=2, TWP=2, ACC=tl.float32)
        out = [Variant("fp32", "fp32", base)]
        extra = [Variant("bf16", "bf16", dict(base))]
    elif name == "argmax":
        base = dict(TH=2, TW=2, HAS_BIAS=False, HAS_SKIP=True, ACC=tl.float32, BIG=False)
        out = [Variant("fp32", "fp32", base)]
        extra = [Variant("bf16", "bf16", dict(base))]
    elif name.startswith("ce_"):  # FCN-8s's upscore8 with a skip: 2 x 2 taps a phase, 16 x 16 taps in lanes
        base = dict(TH=2, TW=2, HAS_BIAS=False, HAS_SKIP=True, ACC=tl.float32, BIG=False)
        if name == "ce_pixel":
            base.update(NEED_BIAS=True, NEED_SKIP=True)
        if name in ("ce_gx", "ce_gw"):
            base.update(BLOCK_CI=1, BLOCK_P=ce.LANES // 256, KP=256)
        out = [Variant("fp32", "fp32", base)]
        extra = [Variant("bf16", "bf16", dict(base))]
    elif name == "bias_grad":
        base = dict(WRITE_SKIP=True, NEED_BIAS=True, ACC=tl.float32)
        out = [Variant("fp32", "fp32", base)]
        extra = [Variant("bf16", "bf16", dict(base))]
    elif name in _BILINEAR_POINTERS:  # interpolate_cross_entropy's and interpolate_argmax's
        base = dict(ALIGN=False, ACC=tl.float32)
        if name != "ice_taps":
            base["BIG"] = False
        if name == "ice_lse_backward":
            base["BLOCK_C"] = ice.MAX_BLOCK_C
        pointers = _BILINEAR_POINTERS[name]
        out = [Variant("fp32", "fp32", base, pointers)]
        extra = [Variant("bf16", "bf16", dict(base), pointers)]
    else:
        raise KeyError(f"no AOT specialisation for kernel {name!r}: add one to fcn_kernels.triton.aot")
    return out + (extra if all_variants else [])


# The bilinear kernels' labels (int64), per-pixel statistics (float32 for every x dtype but float64) and tap
# tables (int32 indices, float32 weights).
_STATS = {"lse_ptr": "*fp32", "ga_ptr": "*fp32", "gb_ptr": "*fp32", "picked_ptr": "*fp32"}
_BILINEAR_POINTERS = {
    "ice_lse": dict(_STATS, t_ptr="*i64"),
    "ice_lse_backward": dict(_STATS, t_ptr="*i64", idx_ptr="*i32", lam_ptr="*fp32"),
    "ice_taps": dict(idx_ptr="*i32", lam_ptr="*fp32"),
    "ia_argmax": dict(out_ptr="*i64"),
}


def _tap_variant(name, k):
    """The default variant of kernel `name` at stride 1 with a k x k filter, or None if its tap loops have
    no compile-time trip count."""
    variant = _variants(name, False)[0]
    if "TH" not in variant.constexprs:
        return None
    return Variant(f"{variant.label} k{k}", variant.dtype, dict(variant.constexprs, TH=k, TW=k))


# pointers whose element type is not the variant's: partial sums, the loss's labels and statistics
_POINTERS = {
    "part_ptr": "*fp32",
    "t_ptr": "*i64",
    **dict.fromkeys(("lse_ptr", "picked_ptr", "ga_ptr", "gb_ptr"), "*fp32"),
}


def _source(fn, variant, config):
    constexprs = dict(variant.constexprs, **config.kwargs)
    missing = [q.name for q in fn.params if q.is_constexpr and q.name not in constexprs]
    if missing:
        raise KeyError(f"{fn.__name__}: no value for constexpr(s) {missing}")
    signature, attrs = {}, {}
    for i, arg in enumerate(fn.arg_names):
        if arg in constexprs:
            signature[arg] = "constexpr"
        elif arg.endswith("_ptr"):
            signature[arg] = variant.pointers.get(arg) or _POINTERS.get(arg, f"*{variant.dtype}")
            attrs[(i,)] = [["tt.divisibility", 16]]  # torch allocations are 16-byte aligned
        else:
            signature[arg] = "i32"
    return triton.compiler.ASTSource(fn, signature, constexprs=constexprs, attrs=attrs)


_REGS = re.compile(r"Used (\d+) registers")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def _ptxas_usage(ptx, capability):
    """(registers, spill store bytes, spill load bytes) that ptxas reports for this PTX."""
    ptxas = get_ptxas(capability).path
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        res = subprocess.run(
            [ptxas, "-v", f"--gpu-name={sm_arch_from_capability(capability)}", src, "-o", os.path.join(tmp, "k.o")],
            capture_output=True,
            text=True,
            check=True,
        )
    log = res.stdout + res.stderr
    regs = max((int(m) for m in _REGS.findall(log)), default=0)
    spills = [tuple(map(int, m)) for m in _SPILL.findall(log)]
    return regs, sum(stores for stores, _ in spills), sum(loads for _, loads in spills)


@dataclass
class Row:
    arch: str
    kernel: str
    variant: str
    config: str
    num_warps: int
    num_stages: int
    registers: int = -1
    spill_stores: int = -1
    spill_loads: int = -1
    shared_bytes: int = -1
    seconds: float = -1.0  # compile time, ptxas -v excluded (near 0 on a hit in Triton's cache)
    error: str = ""

    @property
    def ok(self):
        return (
            not self.error
            and self.spill_stores == 0
            and self.spill_loads == 0
            and self.shared_bytes <= MAX_SHARED.get(int(self.arch[3:]), 0)
        )


def _config_label(config):
    return " ".join(f"{k[6:] if k.startswith('BLOCK_') else k}={v}" for k, v in config.kwargs.items())


def compile_one(name, autotuner, variant, config, capability):
    row = Row(f"sm_{capability}", name, variant.label, _config_label(config), config.num_warps, config.num_stages)
    try:
        start = time.perf_counter()
        kernel = triton.compile(
            _source(autotuner.fn, variant, config),
            target=GPUTarget("cuda", capability, 32),
            options=dict(num_warps=config.num_warps, num_stages=config.num_stages),
        )
        row.seconds = round(time.perf_counter() - start, 2)
        row.shared_bytes = int(kernel.metadata.shared)
        row.registers, row.spill_stores, row.spill_loads = _ptxas_usage(kernel.asm["ptx"], capability)
    except Exception as e:  # reported in the table, fails the run
        row.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:200]
    return row


def kernels():
    """{name: autotuned kernel} of every Triton kernel in fcn_kernels.triton."""
    found = dict(us.AUTOTUNED)
    found.update({RC_PREFIX + name: k for name, k in rc.AUTOTUNED.items()})
    found.update(bg.AUTOTUNED)
    found.update(ua.AUTOTUNED)
    found.update(ice.AUTOTUNED)
    found.update(ia.AUTOTUNED)
    found.update(ce.AUTOTUNED)
    return found


def cases(archs=ARCHS, all_variants=False):
    """(name, autotuner, variant, config, capability) for every kernel, variant, config and arch: every
    config, also those that FCN_KERNELS_TRITON_AUTOTUNE=0 or the interpreter leave out."""
    for capability in archs:
        for name, autotuner in kernels().items():
            for variant in _variants(name, all_variants):
                for config in autotuner.all_configs:
                    yield name, autotuner, variant, config, capability


def tap_cases(taps, archs=ARCHS):
    """(name, autotuner, variant, config, capability): the kernels with compile-time tap loops at stride 1
    with each k x k filter of `taps`, first config only."""
    for capability in archs:
        for k in taps:
            for name, autotuner in kernels().items():
                variant = _tap_variant(name, k)
                if variant is not None:
                    yield name, autotuner, variant, autotuner.all_configs[0], capability


def compile_all(archs=ARCHS, all_variants=False, taps=()):
    return [compile_one(*c) for c in cases(archs, all_variants)] + [compile_one(*c) for c in tap_cases(taps, archs)]


def format_table(rows):
    head = (
        f"{'arch':<6} {'kernel':<24} {'variant':<13} {'config':<20} {'warps':>5} {'stages':>6} "
        f"{'regs':>5} {'spill st/ld':>11} {'smem B':>7} {'s':>6}  status"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        status = "ok" if r.ok else (r.error or ("SPILLS" if r.spill_stores or r.spill_loads else "SMEM"))
        lines.append(
            f"{r.arch:<6} {r.kernel:<24} {r.variant:<13} {r.config:<20} {r.num_warps:>5} {r.num_stages:>6} "
            f"{r.registers:>5} {f'{r.spill_stores}/{r.spill_loads}':>11} {r.shared_bytes:>7} "
            f"{r.seconds:>6.1f}  {status}"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fcn_kernels.triton.aot", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, nargs="+", default=list(ARCHS), help="compute capabilities (default 80 90)")
    p.add_argument("--all-variants", action="store_true", help="also bfloat16 and TF32 dots")
    p.add_argument(
        "--taps",
        type=int,
        nargs="+",
        default=[],
        metavar="K",
        help="also the kernels with compile-time tap loops at stride 1, K x K filters (e.g. 16 64)",
    )
    p.add_argument("--json", help="also write the rows as JSON")
    args = p.parse_args(argv)
    rows = compile_all(args.arch, args.all_variants, args.taps)
    print(format_table(rows))
    bad = [r for r in rows if not r.ok]
    print(f"{len(rows)} compilations, {len(bad)} failed or spilled (triton {triton.__version__})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
