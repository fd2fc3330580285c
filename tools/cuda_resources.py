"""Registers, shared memory and spills of every CUDA kernel in csrc/SOURCES, per architecture, from
`nvcc -Xptxas -v` (the kernel files include no torch headers, so this needs only the toolkit).
Exits 1 if any kernel spills. Usage: python tools/cuda_resources.py [--arch 80 90]"""
import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_toolkit import find_cuda_home  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cuda_sources():
    lines = (ROOT / "csrc" / "SOURCES").read_text().splitlines()
    return [ROOT / parts[1] for parts in (l.split("#")[0].split() for l in lines)
            if len(parts) == 2 and parts[0] == "cuda" and parts[1].endswith(".cu")]


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
        return out.stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return names


def usage(nvcc, src, arch):
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([nvcc, "-std=c++17", "-O3", "--expt-relaxed-constexpr", f"-I{ROOT / 'csrc'}",
                              f"-arch=sm_{arch}", "-cubin", "-Xptxas", "-v", str(src), "-o", f"{tmp}/k.cubin"],
                             capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"nvcc failed on {src}:\n{out.stderr}")
    rows, name = [], None
    for line in out.stderr.splitlines():
        if m := re.search(r"Function properties for (\S+)", line):
            name = m.group(1)
        elif name and (m := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)):
            spills = int(m.group(1)) + int(m.group(2))
        elif name and (m := re.search(r"Used (\d+) registers", line)):
            smem = re.search(r"(\d+) bytes smem", line)
            rows.append(dict(kernel=name, regs=int(m.group(1)), smem=int(smem.group(1)) if smem else 0,
                             spills=spills))
            name = None
    for row, pretty in zip(rows, demangle([r["kernel"] for r in rows])):
        row["kernel"] = re.sub(r"\(.*", "", pretty.replace("fcn_kernels::", "").replace("(anonymous namespace)::", ""))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", nargs="+", default=["80", "90"])
    args = ap.parse_args()
    home = find_cuda_home()
    if home is None:
        sys.exit("no CUDA toolkit found (set CUDA_HOME)")
    nvcc = str(Path(home, "bin", "nvcc"))
    spilled = False
    print(f"{'arch':>6} {'regs':>5} {'smem B':>7} {'spill B':>8}  kernel")
    for src in cuda_sources():
        for arch in args.arch:
            for r in usage(nvcc, src, arch):
                spilled |= r["spills"] > 0
                print(f"sm_{arch:>3} {r['regs']:>5} {r['smem']:>7} {r['spills']:>8}  {r['kernel']}")
    print("smem B: static shared memory; plane_kernel also takes up to kTileBytes (32 KB) of dynamic shared "
          "memory for its weight tile")
    if spilled:
        sys.exit("some kernels spill registers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
