#!/usr/bin/env bash
# One GPU run: build + install fastconv with the CUDA module, the GPU tests, the GPU benchmark.
#   benchmarks/gpu_check.sh [LOGDIR] [--quick]
# For an offline GPU machine (../shared/gpu/README.md): needs the scipy-openblas32 wheel in
# .whl/ at the project root; everything else (cupy, torch, nvcc, cmake, pytest) is expected
# there already. Logs: LOGDIR (default ./gpu-logs): env.txt, build.log, pytest-gpu.log,
# bench_gpu.{log,json,md}. Set CUDA_ARCHS (default 90: H100/H200) to build for other GPUs.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOG=$(mkdir -p "${1:-$ROOT/gpu-logs}" && cd "${1:-$ROOT/gpu-logs}" && pwd)
QUICK=${2:-}
PY=${PYTHON:-python3}
SITE=${FASTCONV_SITE:-/tmp/fastconv-site}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
status=0

{ date; nvidia-smi; nvcc --version; cmake --version | head -1
  $PY -c "import sys, numpy, cupy, torch; print(sys.version); print('numpy', numpy.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__, 'torch cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
} > "$LOG/env.txt" 2>&1

mkdir -p "$SITE"
{ echo "== scipy-openblas32 from .whl/"
  $PY -m pip install -q --no-index --no-deps --upgrade --target "$SITE" "$ROOT"/.whl/*.whl
  echo "== fastconv (CUDA archs ${CUDA_ARCHS:-90})"
  start=$(date +%s)
  PYTHONPATH=$SITE $PY -m pip install -v --no-build-isolation --no-deps --upgrade --target "$SITE" \
    -C cmake.define.CMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" -C build-dir=/tmp/fastconv-build "$ROOT"
  echo "== install took $(( $(date +%s) - start )) s"
} > "$LOG/build.log" 2>&1 || { echo "build failed: see $LOG/build.log"; exit 1; }
ls "$SITE"/fastconv/_cuda*.so >> "$LOG/build.log" 2>&1 || { echo "fastconv._cuda was not built: see $LOG/build.log"; exit 1; }

export PYTHONPATH=$SITE
# From outside the source tree, so the installed package is the one imported.
# Each stage has a time limit (GPU time is scarce), so a hang in one still leaves the others'
# logs; a test module that cannot be imported there must not stop the rest.
(cd /tmp && timeout "${GPU_TEST_TIMEOUT:-300}" $PY -m pytest -q -m gpu -rfEs -p no:cacheprovider \
   --continue-on-collection-errors --durations=10 "$ROOT/tests") \
  > "$LOG/pytest-gpu.log" 2>&1 || status=1
tail -3 "$LOG/pytest-gpu.log"

(cd /tmp && timeout "${GPU_BENCH_TIMEOUT:-300}" $PY "$ROOT/benchmarks/bench_gpu.py" --out "$LOG" $QUICK) \
  > "$LOG/bench_gpu.log" 2>&1 || status=1
tail -20 "$LOG/bench_gpu.log"
echo "logs in $LOG"
exit $status
