#!/usr/bin/env bash
# One command for a GPU lease: a venv over the machine's CUDA torch, the extension build, the GPU
# tests, every benchmark, and bench/RESULTS.md.
#   bash bench/gpu_suite.sh [--no-tests] [--no-bench] [COPY_TO]
# COPY_TO (e.g. the device tool's $OUT) receives RESULTS.md, results.jsonl and the logs, since a
# remote working tree does not come back. Steps can run in separate calls on one machine (the
# venv, the build and the logs stay in build/): the report reuses an earlier test log. Under a
# 10-minute limit per command: `--no-bench DIR`, then `--no-tests DIR` on the still-warm machine.
# The GPU machine has no internet: nothing is downloaded. Missing Python packages are listed and
# installed only from wheels in $IGM_WHEELS (default .whl/) when that folder exists.
# IGM_PYTHON: the interpreter that holds the CUDA torch (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

run_tests=1 run_bench=1 copy_to=""
for arg in "$@"; do
  case "$arg" in
    --no-tests) run_tests=0 ;;
    --no-bench) run_bench=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "gpu_suite: unknown option $arg" >&2; exit 2 ;;
    *) copy_to=$arg ;;
  esac
done

VENV=build/venv-gpu
PY=$VENV/bin/python
LOGS=build/gpu-suite
WHEELS=${IGM_WHEELS:-.whl}
mkdir -p "$LOGS"

# 1. A venv that reuses the machine's torch/triton. --system-site-packages reaches the base
# interpreter's own packages only; when IGM_PYTHON is itself a venv (the GPU image's python3 is),
# its site-packages are added by a .pth file. No pip inside: the base's pip is reached the same way
# and installs into this venv.
if [ ! -x "$PY" ]; then
  echo "[gpu_suite] creating $VENV over $(command -v "${IGM_PYTHON:-python3}")"
  "${IGM_PYTHON:-python3}" -m venv --system-site-packages --without-pip "$VENV"
  site_dir=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "${IGM_PYTHON:-python3}" -c 'import site; print("import site; " + "; ".join(
      f"site.addsitedir({p!r})" for p in site.getsitepackages()))' > "$site_dir/igm_base_site.pth"
fi

# 2. What is there, what is missing.
missing=$("$PY" - <<'EOF'
import importlib.util
modules = {"torch": "torch", "triton": "triton", "numpy": "numpy", "einops": "einops", "yaml": "pyyaml",
           "tqdm": "tqdm", "matplotlib": "matplotlib", "tensorboard": "tensorboard", "sklearn": "scikit-learn",
           "pytest": "pytest", "pytest_benchmark": "pytest-benchmark", "pip": "pip", "setuptools": "setuptools",
           "wheel": "wheel", "ninja": "ninja", "pybind11": "pybind11"}
print(" ".join(package for module, package in modules.items() if importlib.util.find_spec(module) is None))
EOF
)
if [ -n "$missing" ]; then
  echo "[gpu_suite] missing Python packages: $missing"
  if [ -d "$WHEELS" ]; then
    # shellcheck disable=SC2086  # one word per package
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" $missing
  else
    echo "[gpu_suite] no wheels folder $WHEELS: carry wheels for them (see the device notes); stopping" >&2
    exit 1
  fi
fi
"$PY" - <<'EOF'
import sys
import torch, triton
print(f"[gpu_suite] python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"triton {triton.__version__}")
if not torch.cuda.is_available():
    sys.exit("[gpu_suite] torch sees no CUDA device: this script is for a GPU machine")
print(f"[gpu_suite] GPU: {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}")
EOF

# 3. Build igm_fast and its extension (CUDA sources too when nvcc is found) against that torch.
echo "[gpu_suite] building igm_fast (log: $LOGS/build.log)"
MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip install --no-index --no-build-isolation --no-deps -e . \
  > "$LOGS/build.log" 2>&1 || { tail -n 40 "$LOGS/build.log"; echo "[gpu_suite] build failed" >&2; exit 1; }
"$PY" -c "import igm_fast._C" 2>/dev/null && echo "[gpu_suite] extension igm_fast._C built" \
  || echo "[gpu_suite] no igm_fast._C (no csrc sources yet?)"

# 4. Tests: everything but the slow end-to-end runs, GPU-marked tests included. On CUDA the
# Triton kernels run compiled (tests/conftest.py sets the interpreter only without a GPU).
status=0
if [ "$run_tests" = 1 ]; then
  echo "[gpu_suite] tests (log: $LOGS/tests.log)"
  "$PY" -m pytest tests -m "gpu or not slow" -q -p no:cacheprovider 2>&1 | tee "$LOGS/tests.log" \
    || status=1
fi

# 5. Benchmarks: every bench_*.py; bench/common.py report() appends rows to IGM_BENCH_OUT.
if [ "$run_bench" = 1 ]; then
  echo "[gpu_suite] benchmarks (log: $LOGS/bench.log)"
  rm -f "$LOGS/results.jsonl"
  # TRITON_PRINT_AUTOTUNING puts each kernel's chosen tile config in the log, for later tuning.
  IGM_BENCH_OUT="$LOGS/results.jsonl" TRITON_PRINT_AUTOTUNING=1 "$PY" -m pytest bench -q -s -p no:cacheprovider 2>&1 \
    | tee "$LOGS/bench.log" || status=1
fi

# 6. The report, with the last test summary if a test log exists.
tests_summary=""
if [ -f "$LOGS/tests.log" ]; then
  tests_summary=$(grep -E '[0-9]+ (passed|failed|error)' "$LOGS/tests.log" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//' || true)
  tests_summary="pytest tests -m \"gpu or not slow\": ${tests_summary:-no summary line (see $LOGS/tests.log)}"
fi
if [ -s "$LOGS/results.jsonl" ]; then
  "$PY" bench/write_results.py "$LOGS/results.jsonl" -o bench/RESULTS.md --tests "$tests_summary"
else
  echo "[gpu_suite] no benchmark rows in $LOGS/results.jsonl: bench/RESULTS.md not written" >&2
  status=1
fi

if [ -n "$copy_to" ]; then
  mkdir -p "$copy_to"
  for f in bench/RESULTS.md "$LOGS/results.jsonl" "$LOGS/tests.log" "$LOGS/bench.log" "$LOGS/build.log"; do
    if [ -f "$f" ]; then cp "$f" "$copy_to/"; fi
  done
  echo "[gpu_suite] copied the report and logs to $copy_to"
fi
exit "$status"
