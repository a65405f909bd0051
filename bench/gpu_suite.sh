#!/usr/bin/env bash
# One GPU lease, two commands of at most 8 minutes each (run them back to back on the warm machine):
#   bash bench/gpu_suite.sh tests OUT   build the extension, run the GPU-relevant tests (~<= 8 min)
#   bash bench/gpu_suite.sh bench OUT   run the benchmarks, write bench/RESULTS.md (~<= 8 min)
#   bash bench/gpu_suite.sh all OUT     both, for a machine without a per-command limit
# OUT (e.g. the device tool's $OUT) receives every log as it is written (tee), the step outcomes
# (steps.tsv), results.jsonl and RESULTS.md, so a command cut short still returns what it did.
# bench/RESULTS.md is written after every command, also when a step failed or timed out, and
# says which. Needs only torch, triton, numpy, pytest and the build tools (pip, setuptools, a
# compiler, nvcc for the CUDA sources); nothing is downloaded. IGM_PYTHON: interpreter with the CUDA torch.
# Triton's cache lives in build/triton-cache (ignored by git, kept between calls on one machine),
# so the benchmarks reuse what the tests compiled. Tests autotune in quick mode (IGM_AUTOTUNE=quick:
# the first config that fits, no benchmarking); the benchmarks autotune fully.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case "$mode" in
  tests|bench|all) ;;
  -h|--help|"") sed -n '2,14p' "$0"; exit 0 ;;
  *) echo "gpu_suite: unknown mode $mode (tests, bench or all)" >&2; exit 2 ;;
esac
OUT_DIR=${2:-build/gpu-suite}
mkdir -p "$OUT_DIR" build
OUT_DIR=$(cd "$OUT_DIR" && pwd)
PY=${IGM_PYTHON:-python3}
STEPS="$OUT_DIR/steps.tsv"
export TRITON_CACHE_DIR="$PWD/build/triton-cache" PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
export IGM_BENCH_OUT="$OUT_DIR/results.jsonl"
status=0

# step NAME SECONDS CMD...: runs CMD under `timeout`, its output teed into OUT/NAME.log as it comes;
# the outcome goes to steps.tsv.
step() {
  local name=$1 seconds=$2 start rc
  shift 2
  start=$(date +%s)
  echo "[gpu_suite] $name (limit ${seconds}s, log $OUT_DIR/$name.log)"
  timeout --signal=TERM --kill-after=10 "$seconds" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
  rc=${PIPESTATUS[0]}
  local took=$(( $(date +%s) - start ))
  if [ "$rc" = 0 ]; then
    printf '%s\tok (%ss)\n' "$name" "$took" >> "$STEPS"
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    printf '%s\tTIMED OUT after %ss (limit %ss)\n' "$name" "$took" "$seconds" >> "$STEPS"; status=1
  else
    printf '%s\tFAILED, exit %s after %ss\n' "$name" "$rc" "$took" >> "$STEPS"; status=1
  fi
  return "$rc"
}

report() {
  local summary=""
  if [ -f "$OUT_DIR/tests.log" ]; then
    summary=$(grep -E '[0-9]+ (passed|failed|error)' "$OUT_DIR/tests.log" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
  fi
  "$PY" bench/write_results.py "$IGM_BENCH_OUT" -o bench/RESULTS.md --steps "$STEPS" \
    --tests "${summary:-no pytest summary line (see tests.log)}" && cp bench/RESULTS.md "$OUT_DIR/RESULTS.md"
}
trap report EXIT

if [ "$mode" != bench ]; then
  : > "$STEPS"
  rm -f "$IGM_BENCH_OUT"
fi

step environment 60 "$PY" - <<'PYEOF' || { echo "[gpu_suite] environment unusable, stopping" >&2; exit 1; }
import importlib.util, sys
missing = [m for m in ("torch", "triton", "numpy", "pytest", "pip", "setuptools") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {missing}")
import torch, triton
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}")
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device: this script is for a GPU machine")
print(f"GPU: {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}")
PYEOF

if [ "$mode" != bench ]; then
  # Editable install against the machine's torch (the extension, CUDA sources included when nvcc
  # is there); --no-deps --no-index --no-build-isolation: nothing is fetched.
  step build 240 env MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" -m pip install -q --no-index --no-deps \
    --no-build-isolation -e .
  # The kernel, op and augmentation tests; the sm_90 ahead-of-time compile (slow) ran on CPU.
  IGM_AUTOTUNE=quick step tests 210 "$PY" -m pytest -q -p no:cacheprovider --maxfail=5 -m "gpu or not slow" \
    tests/test_kernel_mdff.py tests/test_kernel_similarity_kl.py tests/test_kernel_adaln.py \
    tests/test_kernel_aot.py tests/test_ops_compile.py tests/test_augment.py
fi

if [ "$mode" != tests ]; then
  # One pytest per benchmark file, each under its own limit: a slow one cannot starve the rest.
  # TRITON_PRINT_AUTOTUNING logs each kernel's chosen tile config, for later tuning.
  for spec in "bench_mdff 150" "bench_similarity_kl 60" "bench_adaln 60" "bench_step 75" "bench_augment 45"; do
    set -- $spec
    TRITON_PRINT_AUTOTUNING=1 step "$1" "$2" "$PY" -m pytest -q -s -p no:cacheprovider "bench/$1.py"
  done
fi
exit "$status"
