"""NW-UCLA real-data benchmark: pretrain IGM on views 1+2, evaluate on view 3, one markdown table.

    .venv/bin/python bench/ucla_benchmark.py [--raw ../shared/data/nw_ucla/all_sqe] [--out runs/ucla_benchmark]
    .venv/bin/python bench/ucla_benchmark.py --tiny      # 1 epoch per stage: checks the pipeline

Stages (each a plain CLI command, printed before it runs, timed):
  1. python -m igm_fast.data.prepare ucla --raw RAW --out OUT/data          (skipped when present)
  2. python -m igm_fast.train --config configs/ucla_pretrain.yaml --data-root OUT/data --out OUT/pretrain
  3. python -m igm_fast.eval --protocol knn,linear --config configs/ucla_eval.yaml   pretrained encoder
  4. the same with --init random                                  lower reference: random-init encoder
  5. python -m igm_fast.eval --protocol finetune --init random --config configs/ucla_supervised.yaml
                                                         upper reference: same encoder, supervised from scratch
The table (top-1 / top-5 of the LAST epoch, mean class accuracy, wall time per stage) goes to
OUT/ucla_benchmark.md and stdout. Presets are sized for a 2-core CPU: <= 30 minutes when idle.
"""
import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from igm_fast.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
TINY = {"train": ["--epochs", "1"], "linear": ["--set", "linear_epochs=1"], "finetune": ["--set", "finetune_epochs=1"]}


def stage(name, argv, log):
    """Run one CLI command from the repo root; returns its wall seconds."""
    cmd = [sys.executable, "-m", *argv]
    print(f"\n[ucla] {name}: {shlex.join(cmd)}", flush=True)
    start = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    wall = time.time() - start
    if proc.returncode:
        sys.exit(f"[ucla] {name} failed (exit {proc.returncode}); see {log}:\n{Path(log).read_text()[-3000:]}")
    print(f"[ucla] {name}: {wall:.0f} s", flush=True)
    return wall


def results(run):
    return json.loads((run / "eval_summary.json").read_text())["results"]


def table(out, walls, tiny, load):
    frozen = {"random-init encoder (lower reference)": ("eval_random", walls["eval random"]),
              "IGM pretrained encoder": ("eval_igm", walls["eval igm"])}
    rows = ["| encoder | protocol | top-1 | top-5 | mean class acc | wall (s) |", "|---|---|---|---|---|---|"]
    for label, (run, wall) in frozen.items():
        res = results(out / run)
        knn, lin = res["knn"], res["linear"]
        rows.append(f"| {label} | KNN (k=20) | {knn['top1']:.2f} | {knn['top5']:.2f} | {knn['mean_class']:.2f} "
                    f"| {wall:.0f} |")
        rows.append(f"| {label} | KNN k=1 (retrieval) | {knn['retrieval_top1']:.2f} | - | - | |")
        rows.append(f"| {label} | linear probe | {lin['top1']:.2f} | {lin['top5']:.2f} | {lin['mean_class']:.2f} | |")
    sup = results(out / "supervised")["finetune"]
    rows.append(f"| same encoder, supervised from scratch (upper reference) | finetune | {sup['top1']:.2f} | "
                f"{sup['top5']:.2f} | {sup['mean_class']:.2f} | {walls['supervised']:.0f} |")
    total = sum(walls.values())
    header = [
        f"# NW-UCLA benchmark{' (--tiny smoke run: 1 epoch per stage, numbers meaningless)' if tiny else ''}",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}, device {'cuda' if torch.cuda.is_available() else 'cpu'}, "
        f"load average at start {load:.1f}.",
        "Train: views 1+2 (1,020 sequences); test: view 3 (464). Top-1 / top-5 of the last epoch (percent).",
        f"Pretraining: {walls['pretrain']:.0f} s (configs/ucla_pretrain.yaml); whole benchmark {total:.0f} s "
        f"({total / 60:.1f} min).",
        "",
        f"Command: `.venv/bin/python bench/ucla_benchmark.py{' --tiny' if tiny else ''}`",
        "",
    ]
    return "\n".join(header + rows) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", default=str(REPO.parent / "shared" / "data" / "nw_ucla" / "all_sqe"),
                   help="the CTR-GCN json release (all_sqe/*.json)")
    p.add_argument("--out", default=str(REPO / "runs" / "ucla_benchmark"))
    p.add_argument("--tiny", action="store_true", help="1 epoch per stage: a quick check of the pipeline")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    data = out / "data"
    out.mkdir(parents=True, exist_ok=True)
    extra = TINY if args.tiny else {key: [] for key in TINY}
    walls = {}
    load = os.getloadavg()[0]
    if not (data / "ucla" / "meta.json").is_file():
        walls["prepare"] = stage("prepare", ["igm_fast.data.prepare", "ucla", "--raw", args.raw, "--out", str(data)],
                                 out / "prepare.log")
    common = ["--dataset", "ucla", "--data-root", str(data)]
    walls["pretrain"] = stage("pretrain", ["igm_fast.train", "--config", "configs/ucla_pretrain.yaml", *common,
                                           "--out", str(out / "pretrain"), *extra["train"]], out / "pretrain.log")
    encoder = ["--encoder", str(out / "pretrain" / "encoder.pt"), *common]
    frozen = ["igm_fast.eval", "--protocol", "knn,linear", "--config", "configs/ucla_eval.yaml", *encoder]
    walls["eval igm"] = stage("eval igm", [*frozen, "--out", str(out / "eval_igm"), *extra["linear"]],
                              out / "eval_igm.log")
    walls["eval random"] = stage("eval random", [*frozen, "--init", "random", "--out", str(out / "eval_random"),
                                                 *extra["linear"]], out / "eval_random.log")
    walls["supervised"] = stage("supervised", ["igm_fast.eval", "--protocol", "finetune", "--init", "random",
                                               "--config", "configs/ucla_supervised.yaml", *encoder,
                                               "--out", str(out / "supervised"), *extra["finetune"]],
                                out / "supervised.log")
    report = table(out, walls, args.tiny, load)
    atomic_write_text(report, out / "ucla_benchmark.md")
    print("\n" + report + f"\nwritten to {out / 'ucla_benchmark.md'}")


if __name__ == "__main__":
    main()
