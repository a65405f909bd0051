"""Turn the benchmark rows that bench/common.py's report() appends to a JSON-lines file into a
markdown report: the environment, then one table per op with time, spread, speedups and the
rows' other measures.

    python bench/write_results.py build/gpu-suite/results.jsonl -o bench/RESULTS.md [--tests "..."] [--steps FILE]

--steps names a file of "step<TAB>outcome" lines (bench/gpu_suite.sh writes one): they head the
report, and with it a report is written even when no benchmark row exists, saying so.

"x vs IMPL" = IMPL's time / this row's time for the same shape: above 1 means this row is faster.
"""
import argparse
import datetime
import sys

from igm_fast.io import InputError, atomic_write_text, read_jsonl

REQUIRED = ("op", "shape", "impl", "ms")
NOT_MEASURES = {"op", "shape", "impl", "ms", "device", "torch", "speedup_vs_baseline"}


def load_rows(path):
    """The rows of a results file; a malformed line is an InputError naming the file and line."""
    rows = []
    for number, row in read_jsonl(path, "benchmark results"):
        missing = [key for key in REQUIRED if key not in row]
        if missing:
            raise InputError(f"{path}:{number}: row lacks {missing} (has {sorted(row)})")
        if not isinstance(row["ms"], (int, float)) or not row["ms"] > 0:
            raise InputError(f"{path}:{number}: 'ms' must be a positive number, got {row['ms']!r}")
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no benchmark rows")
    return rows


def runtime_env():
    """GPU name and torch / CUDA / triton versions of this interpreter."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    return {
        "GPU": torch.cuda.get_device_name() if torch.cuda.is_available() else "none (no CUDA device)",
        "torch": torch.__version__,
        "CUDA (torch build)": torch.version.cuda or "none",
        "triton": triton_version,
    }


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _op_table(rows):
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    measures = list(dict.fromkeys(k for r in rows for k in r if k not in NOT_MEASURES))
    ms_of = {(r["shape"], r["impl"]): r["ms"] for r in rows}
    header = ["shape", "impl", "ms"] + [f"x vs {b}" for b in impls] + measures
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        ratios = [f"{ms_of[(r['shape'], b)] / r['ms']:.2f}" if b != r["impl"] and (r["shape"], b) in ms_of else ""
                  for b in impls]
        cells = [r["shape"], r["impl"], _cell(float(r["ms"]))] + ratios + [_cell(r.get(m)) for m in measures]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(rows, env, date, tests=None, steps=None, missing=None):
    lines = ["# Benchmark results", "",
             f"Written {date} by `bench/write_results.py` from measurements of `pytest bench/` "
             "(bench/gpu_suite.sh). ms = median; q20/q80 = quantiles; "
             "\"x vs IMPL\" = IMPL's time / this row's time (above 1: this row is faster).", ""]
    lines += [f"- {key}: {value}" for key, value in env.items()]
    if rows:
        lines.append(f"- devices in the rows: {', '.join(sorted({str(r.get('device', '?')) for r in rows}))}")
    if tests:
        lines.append(f"- tests: {tests}")
    if steps:
        lines += ["", "## Steps", "", "| step | outcome |", "|---|---|"]
        lines += [f"| {step} | {outcome} |" for step, outcome in steps]
    if missing:
        lines += ["", f"**No benchmark rows**: {missing}"]
    for op in dict.fromkeys(r["op"] for r in rows):
        lines += ["", f"## {op}", ""] + _op_table([r for r in rows if r["op"] == op])
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="JSON-lines file written by bench/common.py report()")
    parser.add_argument("-o", "--output", default="bench/RESULTS.md")
    parser.add_argument("--tests", help="one-line summary of the test run, shown in the header")
    parser.add_argument("--steps", help='file of "step<TAB>outcome" lines; with it, a report is written '
                                        "even without benchmark rows")
    args = parser.parse_args(argv)
    steps = None
    if args.steps:
        with open(args.steps) as f:
            steps = [line.rstrip("\n").partition("\t")[::2] for line in f if line.strip()]
    missing = None
    try:
        rows = load_rows(args.results)
    except InputError as e:
        if steps is None:
            sys.exit(f"write_results: {e}")
        rows, missing = [], str(e)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    atomic_write_text(markdown(rows, runtime_env(), date, args.tests, steps, missing), args.output)
    print(f"wrote {args.output} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
