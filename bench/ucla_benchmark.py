"""NW-UCLA real-data benchmark: pretrain IGM, evaluate the frozen encoder, one markdown table + JSON.

    .venv/bin/python bench/ucla_benchmark.py [--seed N] [--raw ../shared/data/nw_ucla/all_sqe] [--out DIR]
    .venv/bin/python bench/ucla_benchmark.py --protocol val           # choose settings: view 1 -> view 2
    .venv/bin/python bench/ucla_benchmark.py --ablation               # the loss ablation (one pretrain each)
    .venv/bin/python bench/ucla_benchmark.py --tiny                   # 1 epoch per stage: checks the pipeline

Protocols: `test` = the standard one (train views 1+2, test view 3: dataset `ucla`); `val` =
train view 1, validate on view 2 (dataset `ucla-val`), the only one to choose settings on.
Stages (each a plain CLI command, printed before it runs, timed):
  1. python -m igm_fast.data.prepare ucla --raw RAW --out OUT/data          (skipped when present)
  2. python -m igm_fast.train --config configs/ucla_pretrain.yaml ...        IGM pretraining
  3. python -m igm_fast.eval --protocol knn,linear --config configs/ucla_eval.yaml   pretrained encoder
  4. the same with --init random                                  lower reference: random-init encoder
  5. python -m igm_fast.eval --protocol finetune --init random --config configs/ucla_supervised.yaml
                                                         upper reference: same encoder, supervised from scratch
  6. the same with --init pretrained                     the pretrained encoder, finetuned
--ablation replaces 2-3 by one pretrain + frozen eval per variant of ABLATION (and skips 5-6).
The table (top-1 / top-5 of the LAST epoch, mean class accuracy, wall time per stage) goes to
OUT/ucla_benchmark.md, the numbers to OUT/ucla_benchmark.json, both printed.
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

from igm_fast.io import atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DATASETS = {"test": "ucla", "val": "ucla-val"}
TINY = {"train": ["--epochs", "1"], "linear": ["--set", "linear_epochs=1"], "finetune": ["--set", "finetune_epochs=1"]}
# variant -> pretraining overrides (same budget each; issue 9's ablation). Explicit weights: the
# preset's own choice (idempotency off, chosen on ucla-val) is one of the variants.
ABLATION = {
    "MacDiff objective alone (idempotency weights 0)": ["lambda_feat=0", "lambda_dist=0"],
    "feature idempotency only": ["lambda_feat=1", "lambda_dist=0"],
    "distribution idempotency only": ["lambda_feat=0", "lambda_dist=1"],
    "full IGM (both weights 1)": ["lambda_feat=1", "lambda_dist=1"],
    "full IGM without MDFF (eta 0)": ["lambda_feat=1", "lambda_dist=1", "mdff_eta=0"],
    "MacDiff objective alone without MDFF (eta 0)": ["lambda_feat=0", "lambda_dist=0", "mdff_eta=0"],
    "MacDiff objective alone without token uniformity": ["lambda_feat=0", "lambda_dist=0", "lambda_uni=0"],
}


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


def frozen_rows(label, res, wall):
    knn, lin = res["knn"], res["linear"]
    spread = f"{knn['feature_effective_rank']:.1f} / {knn['feature_mean_cos']:.2f}"
    return [f"| {label} | KNN (k=20) | {knn['top1']:.2f} | {knn['top5']:.2f} | {knn['mean_class']:.2f} | {spread} "
            f"| {wall} |",
            f"| {label} | KNN k=1 (retrieval) | {knn['retrieval_top1']:.2f} | - | - | | |",
            f"| {label} | linear probe | {lin['top1']:.2f} | {lin['top5']:.2f} | {lin['mean_class']:.2f} | | |"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", default=str(REPO.parent / "shared" / "data" / "nw_ucla" / "all_sqe"),
                   help="the CTR-GCN json release (all_sqe/*.json)")
    p.add_argument("--out", help="default runs/ucla_benchmark[_val][_ablation]_seedN")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocol", choices=tuple(DATASETS), default="test")
    p.add_argument("--ablation", action="store_true", help="pretrain + frozen eval for each variant of ABLATION")
    p.add_argument("--epochs", type=int, help="pretraining epochs (default: configs/ucla_pretrain.yaml's)")
    p.add_argument("--tiny", action="store_true", help="1 epoch per stage: a quick check of the pipeline")
    args = p.parse_args(argv)
    suffix = f"{'_val' if args.protocol == 'val' else ''}{'_ablation' if args.ablation else ''}_seed{args.seed}"
    out = Path(args.out or REPO / "runs" / f"ucla_benchmark{suffix}").resolve()
    data, dataset = out / "data", DATASETS[args.protocol]
    earlier = sorted(d.name for d in out.glob("*") if d.is_dir() and d.name != "data") if out.is_dir() else []
    if earlier:  # the trainer never overwrites a run; say so before minutes of work, not after
        sys.exit(f"[ucla] {out} holds an earlier benchmark run ({', '.join(earlier)}): remove it or pass another --out "
                 f"(the prepared data in {out / 'data'} may stay)")
    out.mkdir(parents=True, exist_ok=True)
    extra = TINY if args.tiny else {key: [] for key in TINY}
    if args.epochs and not args.tiny:
        extra["train"] = ["--epochs", str(args.epochs)]
    walls, load = {}, os.getloadavg()[0]
    if not (data / dataset / "meta.json").is_file():
        walls["prepare"] = stage("prepare", ["igm_fast.data.prepare", "ucla", "--raw", args.raw, "--out", str(data)],
                                 out / "prepare.log")
    common = ["--dataset", dataset, "--data-root", str(data), "--seed", str(args.seed)]

    def pretrain(run, overrides):
        sets = ["--set", *overrides] if overrides else []
        walls[f"pretrain {run}"] = stage(f"pretrain {run}", [
            "igm_fast.train", "--config", "configs/ucla_pretrain.yaml", *common, "--out", str(out / run),
            *sets, *extra["train"]], out / f"{run}.log")
        return out / run / "encoder.pt"

    def frozen(run, encoder, init="pretrained"):
        walls[f"eval {run}"] = stage(f"eval {run}", [
            "igm_fast.eval", "--protocol", "knn,linear", "--config", "configs/ucla_eval.yaml", "--init", init,
            "--encoder", str(encoder), *common, "--out", str(out / run), *extra["linear"]], out / f"{run}.log")
        return results(out / run)

    report = {"protocol": args.protocol, "dataset": dataset, "seed": args.seed, "tiny": args.tiny,
              "pretrain_epochs": args.epochs, "results": {}}
    rows = ["| encoder | protocol | top-1 | top-5 | mean class acc | test features: eff. rank / mean cos | wall (s) |",
            "|---|---|---|---|---|---|---|"]
    if args.ablation:
        encoder = None
        for i, (label, overrides) in enumerate(ABLATION.items()):
            encoder = pretrain(f"pretrain_{i}", overrides)
            res = report["results"][label] = frozen(f"eval_{i}", encoder)
            rows += frozen_rows(label, res, f"{walls[f'pretrain pretrain_{i}'] + walls[f'eval eval_{i}']:.0f}")
    else:
        encoder = pretrain("pretrain", [])
        res = report["results"]["IGM pretrained encoder"] = frozen("eval_igm", encoder)
        rows += frozen_rows("IGM pretrained encoder", res, f"{walls['pretrain pretrain'] + walls['eval eval_igm']:.0f}")
    res = report["results"]["random-init encoder (lower reference)"] = frozen("eval_random", encoder, "random")
    rows += frozen_rows("random-init encoder (lower reference)", res, f"{walls['eval eval_random']:.0f}")
    if not args.ablation:  # the same finetune recipe from random init and from the pretrained encoder
        for run, init, label in (("supervised", "random", "same encoder, supervised from scratch (upper reference)"),
                                 ("finetune_igm", "pretrained", "IGM pretrained encoder, finetuned")):
            walls[run] = stage(run, [
                "igm_fast.eval", "--protocol", "finetune", "--init", init, "--config", "configs/ucla_supervised.yaml",
                "--encoder", str(encoder), *common, "--out", str(out / run), *extra["finetune"]], out / f"{run}.log")
            res = report["results"][label] = results(out / run)["finetune"]
            rows.append(f"| {label} | finetune | {res['top1']:.2f} | {res['top5']:.2f} | {res['mean_class']:.2f} | "
                        f"| {walls[run]:.0f} |")
    total = sum(walls.values())
    split = "view 1 -> view 2 (validation)" if args.protocol == "val" else "views 1+2 -> view 3 (test)"
    report.update(walls_s={k: round(v, 1) for k, v in walls.items()}, total_s=round(total, 1),
                  torch=torch.__version__, cpu_count=os.cpu_count(), load_at_start=round(load, 2))
    command = f".venv/bin/python bench/ucla_benchmark.py --seed {args.seed} --protocol {args.protocol}" \
              f"{' --ablation' if args.ablation else ''}{f' --epochs {args.epochs}' if args.epochs else ''}" \
              f"{' --tiny' if args.tiny else ''}"
    header = [
        f"# NW-UCLA benchmark{' (--tiny smoke run: 1 epoch per stage, numbers meaningless)' if args.tiny else ''}",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}, device {'cuda' if torch.cuda.is_available() else 'cpu'}, "
        f"load average at start {load:.1f}, seed {args.seed}.",
        f"Protocol: {split}. Top-1 / top-5 of the last epoch (percent).",
        f"Whole run {total:.0f} s ({total / 60:.1f} min).",
        "",
        f"Command: `{command}`",
        "",
    ]
    text = "\n".join(header + rows) + "\n"
    atomic_write_text(text, out / "ucla_benchmark.md")
    atomic_write_json(report, out / "ucla_benchmark.json")
    print("\n" + text + f"\nwritten to {out / 'ucla_benchmark.md'} and ucla_benchmark.json")


if __name__ == "__main__":
    main()
