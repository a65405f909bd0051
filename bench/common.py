"""Shared benchmark plumbing: timing, a printed table with ratios, and a JSON-lines record
that bench/gpu_suite.sh turns into bench/RESULTS.md."""
import json
import os
import time
from pathlib import Path

import pytest
import torch

RESULTS_JSONL = Path(os.environ.get("IGM_BENCH_OUT", Path(__file__).parent / "results.jsonl"))


def require_cuda():
    if not torch.cuda.is_available():
        pytest.skip("GPU benchmark: no CUDA device here (run bench/gpu_suite.sh on a GPU machine)")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("GPU benchmark: TRITON_INTERPRET=1 is set, Triton would not run compiled")


def time_ms(fn, warmup=10, rep=50):
    """Median, 20% and 80% quantile milliseconds of fn() over about `rep` calls after `warmup`.
    CUDA: triton.testing.do_bench, whose warmup/rep are milliseconds, not counts: the counts are
    turned into milliseconds with one timed call."""
    if torch.cuda.is_available():
        import triton.testing

        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        once_ms = (time.perf_counter() - t0) * 1e3
        med, q20, q80 = triton.testing.do_bench(fn, warmup=max(1.0, warmup * once_ms), rep=max(1.0, rep * once_ms),
                                                quantiles=[0.5, 0.2, 0.8])
        return med, q20, q80
    for _ in range(max(1, warmup // 5)):
        fn()
    times = []
    for _ in range(max(3, rep // 5)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]  # noqa: E731
    return q(0.5), q(0.2), q(0.8)


def peak_memory_mb(fn):
    if not torch.cuda.is_available():
        return float("nan")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def device_name():
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def report(op, shape, rows, baseline="eager"):
    """rows: {impl: {"ms": float, ...extra}}; prints a table with speedups vs every other impl
    and appends one JSON line per impl to RESULTS_JSONL."""
    print(f"\n{op} {shape} on {device_name()}")
    for impl, r in rows.items():
        ratios = "  ".join(f"x{rows[b]['ms'] / r['ms']:.2f} vs {b}" for b in rows if b != impl)
        extra = "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items() if k != "ms")
        print(f"  {impl:>14s}: {r['ms']:9.4f} ms  {ratios}  {extra}")
    RESULTS_JSONL.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS_JSONL, "a") as f:
        for impl, r in rows.items():
            f.write(json.dumps(dict(op=op, shape=shape, impl=impl, device=device_name(),
                                    torch=torch.__version__, speedup_vs_baseline=rows[baseline]["ms"] / r["ms"]
                                    if baseline in rows else None, **r)) + "\n")
