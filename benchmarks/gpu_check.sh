#!/usr/bin/env bash
# One command on a fresh GPU machine (torch and triton installed, no internet needed): build the
# extension in place, report the CUDA kernels' resources, run every `cuda` test, run the kernels
# under compute-sanitizer (memcheck, racecheck) when the toolkit has it, then print the benchmark
# tables and write them to benchmarks/results/<date>-<gpu>-*.json:
#   - the FCN-8s head (cuda, triton, stock eager, torch.compile(stock); fp32 and bf16; batch 1 and 16;
#     forward and forward+backward; "floor %" = the head's minimum bytes at the bandwidth of a copy
#     measured in the same run, over the fastest fused time);
#   - rarefied_conv2d (cuda, triton, stock cuDNN; dense 512->512 and depthwise 3x3; batch 16;
#     copy_fraction of the depthwise forwards in the JSON's extra_info).
# FCN_SANITIZE=0 skips compute-sanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
export MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
python -m pip install -q --no-build-isolation --no-deps -e .
python -c "import fcn_kernels; print('backends:', fcn_kernels.available_backends())"
python tools/cuda_resources.py
FCN_EXPECT_CUDA_KERNELS=1 python -m pytest -q -m cuda tests

sanitizer=$(command -v compute-sanitizer || true)
home=$(python -c "import sys; sys.path.insert(0, 'tools'); from cuda_toolkit import find_cuda_home; print(find_cuda_home() or '')")
[ -z "$sanitizer" ] && [ -x "$home/bin/compute-sanitizer" ] && sanitizer="$home/bin/compute-sanitizer"
if [ "${FCN_SANITIZE:-1}" = 1 ] && [ -n "$sanitizer" ]; then
  for tool in memcheck racecheck; do
    echo "compute-sanitizer --tool $tool"
    "$sanitizer" --tool "$tool" --error-exitcode 1 python tools/cuda_sanitize.py
  done
else
  echo "compute-sanitizer: skipped (${sanitizer:-not found})"
fi

gpu=$(python -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))")
stamp="benchmarks/results/$(date +%Y-%m-%d)-$gpu"
backends=$(python -c "import fcn_kernels as f; print(' '.join(b for b in ('cuda', 'triton') if b in f.available_backends()))")
for dtype in float32 bfloat16; do
  fcn-kernels bench --device cuda --batch 1 16 --weights depthwise dense --dtype "$dtype" --backward \
    --backend $backends --json "$stamp-head-$dtype.json"
done
FCN_BENCH_FULL=1 python -m pytest -q benchmarks/bench_gpu_rarefied_conv2d.py -k "not compiled" \
  --benchmark-max-time=0.2 --benchmark-group-by=group --benchmark-columns=median,iqr \
  --benchmark-json="$stamp-rarefied.json"
