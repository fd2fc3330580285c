"""Finding the real CUDA toolkit. The nvcc on PATH may be a wrapper script (exec /x/bin/nvcc "$@"),
whose own directory is not a toolkit, so look inside it for the nvcc it runs. Used by setup.py and
tools/cuda_resources.py."""
import os
import re
import shutil
from pathlib import Path


def find_cuda_home():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var) and Path(os.environ[var], "bin", "nvcc").exists():
            return os.environ[var]
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        path = Path(nvcc).resolve()
        candidates.append(path)
        try:
            head = path.read_bytes()[:4096]
            if not head.startswith(b"\x7fELF"):
                candidates += [Path(m.decode()) for m in re.findall(rb"(/\S+/bin/nvcc)\b", head)]
        except OSError:
            pass
    candidates.append(Path("/usr/local/cuda/bin/nvcc"))
    for cand in candidates:
        root = cand.resolve().parent.parent
        if (root / "include" / "cuda_runtime.h").exists() and (root / "bin" / "nvcc").exists():
            return str(root)
    return None
