"""Builds fcn_kernels._C from the sources listed in csrc/SOURCES.

Switches (environment variables):
  FCN_KERNELS_NO_EXT=1   pure-Python install: only the "reference" backend.
  FORCE_CUDA=1           build the CUDA sources even if torch/toolkit detection says no.
  FCN_KERNELS_NO_CUDA=1  never build the CUDA sources.
  CUDA_HOME              the CUDA toolkit; found from nvcc otherwise (wrapper scripts included).
  TORCH_CUDA_ARCH_LIST   defaults to "8.0;9.0+PTX" (PTX for sm_90, so that newer GPUs JIT it).
  MAX_JOBS               parallel compile jobs (ninja).
  FCN_KERNELS_CPU_ARCH   -march for the C++ CPU kernels (default "native": the extension is built
                         where it runs; set "x86-64-v3", or "" for the compiler's baseline, to build
                         for other machines; without FMA in the arch, the bilinear ops' fused
                         multiply-adds, csrc/index/interpolate.h's blend2, are libm calls: slower).
  FCN_KERNELS_DEBUG_INFO=1
                         keep -g (Python's CFLAGS) in the C++ objects; by default -g0: the CPU-only _C
                         was 106 MB with it, 21 MB of it code.
  FCN_KERNELS_SANITIZE=1 AddressSanitizer + UBSan, any report fatal (scripts/sanitize.sh; CPU only,
                         load it with libasan preloaded; never over the real _C).

torch must be importable here: build with `pip install --no-build-isolation .`.
"""
import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
from cuda_toolkit import find_cuda_home  # noqa: E402  (the wrapper-aware toolkit search, shared)


def read_sources(section):
    out = []
    for line in (ROOT / "csrc" / "SOURCES").read_text().splitlines():
        line = line.split("#", 1)[0].split()
        if len(line) == 2 and line[0] == section:
            out.append(line[1])
    return out


def extensions():
    if os.environ.get("FCN_KERNELS_NO_EXT") == "1":
        return [], {}
    cuda_home = None
    if os.environ.get("FCN_KERNELS_NO_CUDA") != "1":
        cuda_home = find_cuda_home()
        if cuda_home:
            os.environ["CUDA_HOME"] = cuda_home  # read by torch.utils.cpp_extension at import
    try:
        import torch
    except ImportError:  # pip's isolated build environment: a 20-line traceback otherwise
        raise SystemExit("fcn-kernels: torch is not importable in the build environment; install torch, "
                         "then build with `pip install --no-build-isolation .` (or set FCN_KERNELS_NO_EXT=1 "
                         "for a pure-Python install)") from None
    from torch.utils import cpp_extension

    want_cuda = os.environ.get("FCN_KERNELS_NO_CUDA") != "1" and (
        os.environ.get("FORCE_CUDA") == "1" or (torch.version.cuda is not None and cuda_home is not None)
    )
    sources = read_sources("cpu")
    # -fopenmp: at::parallel_for is inline OpenMP in ATen's headers; without it every loop runs serially.
    # -Wno-psabi: GCC's note that 128-byte vector arguments changed ABI in GCC 4.6, printed for every block helper
    # of csrc/cpu/upsample_rows.h; they are inline in one translation unit, so no ABI boundary is crossed.
    cxx = ["-O3", "-fvisibility=hidden", "-fopenmp", "-Wno-psabi"]  # the C++ standard: torch's choice
    arch = os.environ.get("FCN_KERNELS_CPU_ARCH", "native")
    if arch:  # the CPU kernels' inner loops are written to be auto-vectorized
        cxx.append(f"-march={arch}")
    if os.environ.get("FCN_KERNELS_DEBUG_INFO") != "1":
        cxx.append("-g0")  # after Python's -g: the last one counts
    link = ["-fopenmp"]
    if os.environ.get("FCN_KERNELS_SANITIZE") == "1":
        if want_cuda:
            raise SystemExit("fcn-kernels: FCN_KERNELS_SANITIZE=1 builds the CPU kernels only; "
                             "set FCN_KERNELS_NO_CUDA=1")
        sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
        # After -O3 and Python's -fwrapv (which would hide signed overflow from UBSan): the last one counts.
        # -g1: the line tables that reports need, no more (upsample_argmax_kernel.cpp: 10 minutes, 4.2 GB,
        # against 14 minutes, 6.6 GB with -g).
        cxx += ["-O1", "-g1", "-fno-omit-frame-pointer", "-fno-wrapv"] + sanitize
        link += sanitize
    define_macros = []
    if want_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        sources += read_sources("cuda")
        define_macros.append(("FCN_KERNELS_WITH_CUDA", "1"))
        ext_cls = cpp_extension.CUDAExtension
        extra = {"cxx": cxx, "nvcc": ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]}
    else:
        ext_cls = cpp_extension.CppExtension
        extra = {"cxx": cxx}
    print(f"fcn_kernels: building _C ({'CPU+CUDA' if want_cuda else 'CPU'}; CUDA_HOME={cuda_home})",
          file=sys.stderr)
    ext = ext_cls(
        "fcn_kernels._C",
        sources,
        include_dirs=[str(ROOT / "csrc")],
        define_macros=define_macros,
        extra_compile_args=extra,
        extra_link_args=link,
    )
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(no_python_abi_suffix=True)}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
