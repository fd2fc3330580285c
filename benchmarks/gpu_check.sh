#!/usr/bin/env bash
# One command on a fresh GPU machine (torch and triton installed, no internet needed): build the
# extension in place, report the CUDA kernels' resources, run every `cuda` test, then print the
# benchmark table (cuda, triton, stock eager, torch.compile(stock); fp32 and bf16; batch 1 and 16;
# forward and forward+backward) and write it to benchmarks/results/<date>-<gpu>-<dtype>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
python -m pip install -q --no-build-isolation --no-deps -e .
python -c "import fcn_kernels; print('backends:', fcn_kernels.available_backends())"
python tools/cuda_resources.py
FCN_EXPECT_CUDA_KERNELS=1 python -m pytest -q -m cuda tests
gpu=$(python -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))")
backends=$(python -c "import fcn_kernels as f; print(' '.join(b for b in ('cuda', 'triton') if b in f.available_backends()))")
for dtype in float32 bfloat16; do
  fcn-kernels bench --device cuda --batch 1 16 --weights depthwise dense --dtype "$dtype" --backward \
    --backend $backends --json "benchmarks/results/$(date +%Y-%m-%d)-$gpu-$dtype.json"
done
