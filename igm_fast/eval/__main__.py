"""`python -m igm_fast.eval`: evaluate an encoder, or fuse the test scores of several eval runs.

    python -m igm_fast.eval --protocol knn,linear --encoder runs/x/encoder.pt --dataset ucla --out runs/x/eval
    python -m igm_fast.eval --protocol semi --ratio 0.1 --encoder ... --dataset ntu60-xsub --out ...
    python -m igm_fast.eval fuse runs/joint runs/bone --weights 0.6 0.4 [--out DIR]

Config: built-in defaults (MAMP's values, spelled out in configs/eval_paper.yaml) <- `--config
configs/eval_*.yaml` <- flags <- `--set key=value`.
Outputs in --out (rank 0): eval_summary.json, test_scores.npz (+ test_scores_{protocol}.npz),
test_features.npz (frozen protocols), eval_config.yaml; a table is printed.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from igm_fast import dist
from igm_fast.config import find_preset, merge, parse_overrides, read_yaml, save_config
from igm_fast.data.dataset import load_split
from igm_fast.data.loader import AUG_DEFAULTS, augmentation
from igm_fast.data.skeletons import STREAMS
from igm_fast.eval.finetune import finetune
from igm_fast.eval.fusion import SCORES_FILE, fuse, write_scores
from igm_fast.eval.metrics import accuracy_report
from igm_fast.eval.protocols import FROZEN_PROTOCOLS, check_compatible, run_frozen
from igm_fast.eval.semi import labelled_subset, subset_split
from igm_fast.io import InputError, atomic_path, atomic_write_json
from igm_fast.model.encoder import Encoder, load_encoder

FINETUNE_PROTOCOLS = ("finetune", "semi", "transfer")  # all train encoder + head; differ in the training split
PROTOCOLS = FROZEN_PROTOCOLS + FINETUNE_PROTOCOLS

DEFAULTS = dict(
    batch_size=256, knn_k=20, knn_t=0.07,
    linear_epochs=100, linear_lr=0.1, linear_aug=True,
    finetune_epochs=100, finetune_batch_size=48, finetune_lr=3e-4, finetune_min_lr=1e-5, finetune_warmup_epochs=5,
    weight_decay=0.05, layer_decay=0.8, drop_path=0.3, label_smoothing=0.1, head_hidden=2048, head_dropout=0.0,
    ratio=None, stream="joint", init="pretrained", seed=0, device="auto", progress=True,
    # features: pooled (D) or joints (V*D); finetune head: mlp or mamp; training augmentation (aug_*)
    readout="pooled", head="mlp", **AUG_DEFAULTS,
)


def parse_protocols(text):
    protocols = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"unknown protocol {','.join(unknown) or text!r}; expected one of {', '.join(PROTOCOLS)} "
                         f"(frozen ones may be combined, e.g. knn,linear)")
    if len(protocols) > 1 and any(p in FINETUNE_PROTOCOLS for p in protocols):
        raise ValueError(f"{','.join(protocols)}: {'/'.join(FINETUNE_PROTOCOLS)} run alone, one per command")
    return protocols


def build_encoder(path, cfg, finetuning):
    """The encoder to evaluate: pretrained weights, or the same architecture freshly initialised."""
    encoder = load_encoder(path, drop_path=cfg["drop_path"] if finetuning else 0.0)
    if cfg["init"] == "random":
        torch.manual_seed(cfg["seed"])
        encoder = Encoder(**encoder.config)
    elif cfg["init"] != "pretrained":
        raise ValueError(f"init={cfg['init']!r}: expected pretrained or random")
    return encoder


def run(protocols, encoder, train_split, test_split, cfg, device):
    """{protocol: {"report", "scores"}} (+ test_feats for frozen protocols); test rows in split order."""
    if protocols[0] in FROZEN_PROTOCOLS:
        return run_frozen(encoder, train_split, test_split, protocols=protocols, device=device,
                          batch_size=cfg["batch_size"], knn_k=cfg["knn_k"], knn_t=cfg["knn_t"],
                          linear_epochs=cfg["linear_epochs"], linear_lr=cfg["linear_lr"],
                          linear_aug=cfg["linear_aug"], seed=cfg["seed"], stream=cfg["stream"],
                          readout=cfg["readout"], train_aug=augmentation(cfg), progress=cfg["progress"])
    if protocols[0] == "semi":
        if cfg["ratio"] is None:
            raise ValueError("--protocol semi needs --ratio (e.g. 0.01 or 0.1)")
        train_split = subset_split(train_split, labelled_subset(train_split.labels, cfg["ratio"], cfg["seed"]))
    result = finetune(encoder, train_split, test_split, device=device, epochs=cfg["finetune_epochs"],
                      batch_size=cfg["finetune_batch_size"], lr=cfg["finetune_lr"], min_lr=cfg["finetune_min_lr"],
                      warmup_epochs=cfg["finetune_warmup_epochs"], weight_decay=cfg["weight_decay"],
                      layer_decay=cfg["layer_decay"], label_smoothing=cfg["label_smoothing"],
                      head_hidden=cfg["head_hidden"], head_dropout=cfg["head_dropout"], stream=cfg["stream"],
                      readout=cfg["readout"], head=cfg["head"], aug=augmentation(cfg), seed=cfg["seed"],
                      progress=cfg["progress"])
    result["num_labelled"] = len(train_split)
    return {protocols[0]: result}


def table(rows):
    """Markdown table of {protocol: report}."""
    lines = ["| protocol | top-1 (last epoch) | top-5 | mean class acc | best epoch on test (optimistic) |",
             "|---|---|---|---|---|"]
    for protocol, rep in rows.items():
        best = "-"
        if "best_on_test_top1" in rep:
            best = f"{rep['best_on_test_top1']:.2f} (epoch {rep['best_on_test_epoch']})"
        lines.append(f"| {protocol} | {rep['top1']:.2f} | {rep['top5']:.2f} | {rep['mean_class']:.2f} | {best} |")
        if "retrieval_top1" in rep:
            lines.append(f"| knn k=1 (retrieval) | {rep['retrieval_top1']:.2f} | - | - | - |")
        if "feature_effective_rank" in rep:
            lines.append(f"\ntest features: effective rank {rep['feature_effective_rank']:.1f}, "
                         f"mean pairwise cosine {rep['feature_mean_cos']:.3f}")
    return "\n".join(lines)


def write_outputs(out, protocols, results, test_split, cfg, info):
    out.mkdir(parents=True, exist_ok=True)
    names = test_split.names
    for protocol in protocols:
        scores = results[protocol]["scores"].cpu().numpy()
        if len(scores) != len(names):
            raise RuntimeError(f"{protocol}: {len(scores)} test scores for {len(names)} test samples")
        write_scores(out / f"test_scores_{protocol}.npz", names, scores, test_split.labels)
    # The run's main scores (what `fuse` and `viz confusion` read): the last protocol listed.
    write_scores(out / SCORES_FILE, names, results[protocols[-1]]["scores"].cpu().numpy(), test_split.labels)
    if "test_feats" in results:
        with atomic_path(out / "test_features.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, names=np.asarray(names), features=results["test_feats"].cpu().numpy(),
                     labels=test_split.labels)
    reports = {p: results[p]["report"] for p in protocols}
    save_config(cfg, out / "eval_config.yaml")
    atomic_write_json({**info, "protocols": protocols, "config": cfg, "class_names": test_split.meta["class_names"],
                       "num_test": len(names), "results": reports,
                       **({"num_labelled": results[protocols[0]]["num_labelled"]}
                          if "num_labelled" in results[protocols[0]] else {})},
                      out / "eval_summary.json")
    return reports


def main_eval(argv):
    p = argparse.ArgumentParser(prog="python -m igm_fast.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", required=True, help=f"one of {', '.join(PROTOCOLS)}; knn,linear together")
    p.add_argument("--encoder", required=True, help="encoder.pt or a training checkpoint")
    p.add_argument("--dataset", required=True, help="dataset name (see igm_fast.data.dataset) or prepared dir")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--ratio", type=float, help="labelled fraction for --protocol semi (0.01, 0.1)")
    p.add_argument("--stream", choices=STREAMS, help="input stream derived from the joints")
    p.add_argument("--linear-aug", choices=("on", "off"), help="off: probe on centre-crop features computed once (exact: see eval/features.py)")
    p.add_argument("--init", choices=("pretrained", "random"), help="random: same architecture, fresh weights")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int)
    p.add_argument("--config", help="preset, e.g. configs/eval_cpu.yaml")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config keys (repeatable)")
    args = p.parse_args(argv)
    protocols = parse_protocols(args.protocol)
    layers = []
    if args.config:
        preset = find_preset(args.config)
        layers.append((read_yaml(preset), str(preset)))
    flags = dict(ratio=args.ratio, stream=args.stream, init=args.init, device=args.device, seed=args.seed,
                 linear_aug=None if args.linear_aug is None else args.linear_aug == "on")
    layers += [(flags, "command line"), (parse_overrides(args.set), "--set")]
    cfg = merge(DEFAULTS, *layers)

    device, _, _ = dist.setup_device(cfg["device"])
    try:
        start = time.time()
        encoder = build_encoder(args.encoder, cfg, protocols[0] in FINETUNE_PROTOCOLS).to(device)
        train_split = load_split(args.dataset, "train", args.data_root)
        test_split = load_split(args.dataset, "test", args.data_root)
        check_compatible(encoder, train_split, "training split")
        check_compatible(encoder, test_split, "test split")
        results = run(protocols, encoder, train_split, test_split, cfg, device)
        if dist.is_main():
            info = dict(encoder=str(args.encoder), dataset=args.dataset, data_root=args.data_root,
                        wall_s=round(time.time() - start, 1))
            reports = write_outputs(Path(args.out), protocols, results, test_split, cfg, info)
            print(f"{args.dataset} test ({len(test_split)} samples), encoder {args.encoder} [{cfg['init']}], "
                  f"stream {cfg['stream']}:\n{table(reports)}\nwritten to {args.out}")
    finally:
        dist.cleanup()


def main_fuse(argv):
    p = argparse.ArgumentParser(prog="python -m igm_fast.eval fuse",
                                description="Fuse the test scores of eval runs (aligned by sample name).")
    p.add_argument("runs", nargs="+", help="eval run dirs (or test_scores*.npz files)")
    p.add_argument("--weights", nargs="+", type=float)
    p.add_argument("--out", help="write the fused test_scores.npz and eval_summary.json here")
    args = p.parse_args(argv)
    names, scores, labels = fuse(args.runs, args.weights)
    report = accuracy_report(torch.from_numpy(scores), torch.from_numpy(labels), scores.shape[1])
    reports = {"fused": report}
    if args.out:
        out = Path(args.out)
        write_scores(out / SCORES_FILE, names, scores / scores.sum(1, keepdims=True), labels)
        first_summary = Path(args.runs[0]) / "eval_summary.json"  # class names, for `viz confusion`
        class_names = json.loads(first_summary.read_text())["class_names"] if first_summary.is_file() else None
        atomic_write_json({"protocols": ["fused"], "sources": args.runs, "weights": args.weights,
                           "class_names": class_names, "num_test": len(names), "results": reports},
                          out / "eval_summary.json")
    print(f"fused {len(args.runs)} runs, {len(names)} test samples:\n{table(reports)}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["fuse"]:
            main_fuse(argv[1:])
        else:
            main_eval(argv)
    except (InputError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
