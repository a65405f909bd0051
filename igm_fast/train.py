"""IGM pretraining, then frozen-encoder evaluation: `python -m igm_fast.train [--config PRESET] ...`.

One straight loop (nanoGPT style): config -> distributed setup -> data -> model -> optimizer
-> for each epoch, for each batch: forward (the IGM losses), backward, step, log -> checkpoint
-> export encoder.pt -> KNN + linear probe for the pretrained and a random-init encoder.
`torchrun --nproc_per_node N -m igm_fast.train ...` runs DDP (NCCL on GPU, gloo on CPU).
"""
import argparse
import json
import random
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from igm_fast import dist
from igm_fast.config import find_preset, merge, parse_overrides, read_yaml, save_config
from igm_fast.data.dataset import load_split
from igm_fast.data.loader import AUG_DEFAULTS, SkeletonLoader, augmentation
from igm_fast.eval.protocols import evaluate
from igm_fast.io import InputError, atomic_torch_save, atomic_write_json, atomic_write_text, load_checkpoint
from igm_fast.lr_schedule import warmup_cosine
from igm_fast.model.encoder import Encoder, save_encoder
from igm_fast.model.igm import IGM
from igm_fast.viz.curves import plot_curves

CHECKPOINT_FORMAT = "igm_fast-train"
DEFAULT_PRESET = "cpu-small"

# Every config key with its default (the paper-scale model; configs/paper.yaml spells it out).
# Keys marked "ours" are not given by the IGM paper: they are our choices.
DEFAULTS = dict(
    # data, and its training augmentation (loader.AUG_DEFAULTS: MAMP's crop and rotation, MacDiff's joint noise)
    dataset="synth", data_root=None, out_frames=120, data_on_device="auto", **{**AUG_DEFAULTS, "aug_noise": 0.005},
    # encoder f (MAMP)
    t_patch=4, dim=256, depth=8, heads=8, mlp_ratio=4.0, mask_ratio=0.9,
    # adapter h (MDFF; eta and scale are ours, scale null = 1/sqrt(dim)), generator g, diffusion (MacDiff)
    mdff_eta=0.5, mdff_scale=None, gen_depth=5, schedule="inverse_cosine", schedule_tau=1.0, diffusion_steps=1000,
    cond_drop=0.1,
    # losses: MacDiff's masked-token noise loss and token uniformity; idempotency (tau, weights,
    # stop-gradient, which tokens re-encode x0_hat, the largest t scored: ours; null = every t)
    gen_loss_tokens="masked", lambda_uni=0.02, lambda_feat=1.0, lambda_dist=1.0, tau=0.1, stop_grad_target=True,
    ide_reencode="same", ide_max_t=None, ide_encoder_grad=True,
    # optimisation (MAMP): batch_size is the global batch, split over ranks
    epochs=400, batch_size=128, lr=1e-3, min_lr=5e-4, warmup_epochs=20, weight_decay=0.05,
    beta1=0.9, beta2=0.95, grad_clip=0.0,
    # runtime
    device="auto", amp=False, kernels="auto", seed=0, out=None, resume=None,
    log_every=10, save_every=50, eval_every=0,
    # evaluation (contract 4)
    eval=["knn", "linear"], eval_batch_size=256, knn_k=20, knn_t=0.07, linear_epochs=100, linear_lr=0.1,
    readout="pooled", random_baseline=True,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m igm_fast.train", description=__doc__.split("\n")[0])
    p.add_argument("--config", help=f"YAML preset (file or name in configs/); default {DEFAULT_PRESET}")
    p.add_argument("--dataset", help="synth, ntu60-xsub, ntu60-xview, ntu120-xsub, ntu120-xset, pku1-xsub, "
                                     "pku2-xsub, ucla, or a prepared dataset directory")
    p.add_argument("--data-root", dest="data_root")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int, help="global batch size")
    p.add_argument("--lr", type=float)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", action="store_true", default=None, help="bf16 autocast (GPU only)")
    p.add_argument("--kernels", choices=("auto", "triton", "eager"))
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run directory (default runs/<dataset>-<time>)")
    p.add_argument("--resume", help="checkpoint path, or 'auto': newest checkpoint_last.pt in --out (or runs/)")
    p.add_argument("--eval", help="comma-separated protocols (knn,linear) or 'none'")
    p.add_argument("--data-on-device", dest="data_on_device", choices=("auto", "on", "off"),
                   help="keep the whole training split in device memory (auto: on CUDA when it fits)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable)")
    return p.parse_args(argv)


def cli_layer(args):
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "overrides", "eval") and v is not None}
    if args.eval is not None:
        flags["eval"] = [] if args.eval == "none" else [p.strip() for p in args.eval.split(",") if p.strip()]
    return {**flags, **parse_overrides(args.overrides)}


def find_resume(resume, out):
    """The checkpoint to continue, or None. 'auto' = checkpoint_last.pt of --out (none: fresh start),
    or without --out the newest runs/*/checkpoint_last.pt."""
    if resume is None:
        return None
    if resume != "auto":
        return Path(resume)
    candidates = [Path(out) / "checkpoint_last.pt"] if out else sorted(
        Path("runs").glob("*/checkpoint_last.pt"), key=lambda p: p.stat().st_mtime)
    candidates = [c for c in candidates if c.is_file()]
    return candidates[-1] if candidates else None


def resolve_config(args):
    """CLI > YAML preset > (resumed run's config) > DEFAULTS; unknown keys are an error.
    Returns (config, checkpoint or None)."""
    cli = cli_layer(args)
    ckpt_path = find_resume(cli.get("resume"), cli.get("out"))
    layers, ckpt = [], None
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path, ("format", "config", "model", "optimizer", "scheduler", "epoch", "step"))
        if ckpt["format"] != CHECKPOINT_FORMAT:
            raise InputError(f"{ckpt_path}: not an igm_fast training checkpoint (format {ckpt['format']!r})")
        layers.append((ckpt["config"], str(ckpt_path)))
        cli.setdefault("out", str(ckpt_path.parent))
    if args.config or ckpt is None:
        preset = find_preset(args.config or DEFAULT_PRESET)
        layers.append((read_yaml(preset), str(preset)))
    layers.append((cli, "command line"))
    cfg = merge(DEFAULTS, *layers)
    unknown = sorted(set(cfg["eval"]) - {"knn", "linear"})
    if unknown:
        raise InputError(f"eval: unknown protocols {unknown}; expected knn, linear or none")
    return cfg, ckpt


def param_groups(model, weight_decay):
    """Weight decay on weight matrices only; biases, norms, position embeddings are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim == 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim != 2], "weight_decay": 0.0}]


def build_model(cfg, meta):
    """The IGM of a config, for a dataset's meta (joint count and input statistics)."""
    return IGM(meta["num_joints"], cfg["out_frames"], cfg["t_patch"], cfg["dim"], cfg["depth"], cfg["heads"],
               cfg["mlp_ratio"], gen_depth=cfg["gen_depth"], mask_ratio=cfg["mask_ratio"],
               mdff_eta=cfg["mdff_eta"], mdff_scale=cfg["mdff_scale"], schedule=cfg["schedule"],
               diffusion_steps=cfg["diffusion_steps"], gen_loss_tokens=cfg["gen_loss_tokens"],
               lambda_feat=cfg["lambda_feat"], lambda_dist=cfg["lambda_dist"], tau=cfg["tau"],
               stop_grad_target=cfg["stop_grad_target"], kernels=cfg["kernels"], schedule_tau=cfg["schedule_tau"],
               cond_drop=cfg["cond_drop"], lambda_uni=cfg["lambda_uni"], ide_reencode=cfg["ide_reencode"],
               ide_max_t=cfg["ide_max_t"], ide_encoder_grad=cfg["ide_encoder_grad"], input_mean=meta["input_mean"], input_std=meta["input_std"])


def rng_state():
    """Python, numpy, torch and CUDA generator states, in types weights_only loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state):
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states():
    """Every rank's RNG state (each rank masks and noises differently), for the checkpoint."""
    if not dist.is_distributed():
        return [rng_state()]
    states = [None] * dist.world_size()
    torch.distributed.all_gather_object(states, rng_state())
    return states


def drop_metrics_after(path, step):
    """A resumed run redoes the steps after its checkpoint: forget what the interrupted run logged for them
    (including a last line the interruption cut short)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    if lines:
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:  # the interruption cut the last append short
            lines = lines[:-1]
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    atomic_write_text("".join(line + "\n" for line in kept), path)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate_encoder(encoder, train_split, test_split, cfg, device, seed):
    encoder.eval()
    return evaluate(encoder, train_split, test_split, protocols=tuple(cfg["eval"]), device=device,
                    batch_size=cfg["eval_batch_size"], knn_k=cfg["knn_k"], knn_t=cfg["knn_t"],
                    linear_epochs=cfg["linear_epochs"], linear_lr=cfg["linear_lr"], seed=seed, progress=True,
                    readout=cfg["readout"], train_aug=augmentation(cfg))


def print_table(results, baseline):
    print(f"\n{'metric':<28}{'pretrained':>12}{'random init':>14}")
    for k, v in results.items():
        rand = f"{baseline[k]:>14.2f}" if k in baseline else ""
        print(f"{k:<28}{v:>12.2f}{rand}")


def main(argv=None):
    cfg, ckpt = resolve_config(parse_args(argv))
    device, rank, world = dist.setup_device(cfg["device"])
    main_rank = rank == 0
    if cfg["batch_size"] % world:
        raise InputError(f"batch_size {cfg['batch_size']} is not divisible by {world} processes")
    use_amp = cfg["amp"] and device.type == "cuda"
    if cfg["amp"] and not use_amp and main_rank:
        print("[igm] --amp: bf16 autocast is used on GPU only; running fp32 on CPU")
    out = Path(cfg["out"] or f"runs/{Path(str(cfg['dataset'])).name}-{datetime.now():%Y%m%d-%H%M%S}")
    cfg["out"] = str(out)
    if ckpt is None and ((out / "checkpoint_last.pt").exists() or (out / "metrics.jsonl").exists()):
        raise InputError(f"{out} already holds a run; pass --resume auto to continue it, or choose another --out "
                         f"(existing runs are never overwritten)")
    seed_everything(cfg["seed"] + rank)  # ranks draw different masks and noise

    # data: batches arrive augmented, on the device
    train_split = load_split(cfg["dataset"], "train", cfg["data_root"])
    test_split = load_split(cfg["dataset"], "test", cfg["data_root"])
    loader = SkeletonLoader(train_split, cfg["batch_size"] // world, train=True, device=device,
                            out_frames=cfg["out_frames"], seed=cfg["seed"], rank=rank, world_size=world,
                            data_on_device=cfg["data_on_device"], **augmentation(cfg))
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise InputError(f"{cfg['dataset']}: {len(train_split)} training samples, fewer than one batch of "
                         f"{cfg['batch_size'] // world} per process")

    # model, optimizer, per-iteration schedule
    model = build_model(cfg, train_split.meta).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg["weight_decay"]), lr=cfg["lr"],
                                  betas=(cfg["beta1"], cfg["beta2"]))
    total_steps = cfg["epochs"] * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(
        s, cfg["warmup_epochs"] * steps_per_epoch, total_steps, cfg["min_lr"] / cfg["lr"]))
    start_epoch, step = 0, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, step = ckpt["epoch"], ckpt["step"]
        if len(ckpt.get("rng", [])) == world:
            set_rng_state(ckpt["rng"][rank])
        if main_rank:
            drop_metrics_after(out / "metrics.jsonl", step)
            print(f"[igm] resumed {out} at epoch {start_epoch}, step {step}")
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    # bf16 keeps fp32's exponent range: no loss scaling, hence no GradScaler to checkpoint.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)

    writer = None
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        writer = SummaryWriter(str(out / "tensorboard"))
        print(f"[igm] run dir {out} | {cfg['dataset']}: {len(train_split)} train / {len(test_split)} test, "
              f"{world} process(es) on {device} | "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params")

    def log(record):
        if not main_rank:
            return
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k not in ("kind", "step", "epoch"):
                writer.add_scalar(f"{record['kind']}/{k}", v, record["step"])

    def save_checkpoint(epoch):
        rng = gather_rng_states()
        if not main_rank:
            return
        state = {"format": CHECKPOINT_FORMAT, "config": cfg, "encoder_config": model.encoder.config,
                 "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step, "rng": rng}
        atomic_torch_save(state, out / "checkpoint_last.pt")
        if cfg["save_every"] and epoch % cfg["save_every"] == 0:
            atomic_torch_save(state, out / f"checkpoint_{epoch:04d}.pt")

    # the loop
    loss_names = ("loss", "loss_gen", "loss_feat", "loss_dist") + (("loss_uni",) if cfg["lambda_uni"] else ())
    for epoch in range(start_epoch, cfg["epochs"]):
        model.train()
        loader.set_epoch(epoch)
        sums, count, t0 = torch.zeros(len(loss_names), device=device), 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg['epochs']}", disable=not main_rank, leave=False)
        for i, (x, _, _) in enumerate(bar):
            with autocast:
                losses = ddp(x)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if cfg["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            optimizer.step()
            scheduler.step()
            step += 1
            sums += torch.stack([losses[k].detach().float() for k in loss_names])
            count += 1
            if step % cfg["log_every"] == 0 or i + 1 == steps_per_epoch:
                if dist.is_distributed():  # log the mean over ranks
                    torch.distributed.all_reduce(sums)
                    sums /= world
                elapsed = time.perf_counter() - t0
                record = {"kind": "train", "step": step, "epoch": epoch + 1,
                          **{k: v / count for k, v in zip(loss_names, sums.tolist())},
                          "lr": optimizer.param_groups[0]["lr"],
                          "samples_per_s": count * cfg["batch_size"] / elapsed}
                log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                sps=f"{record['samples_per_s']:.0f}")
                sums.zero_()
                count, t0 = 0, time.perf_counter()
        save_checkpoint(epoch + 1)
        if cfg["eval_every"] and (epoch + 1) % cfg["eval_every"] == 0 and "knn" in cfg["eval"]:
            knn = evaluate_encoder(model.encoder, train_split, test_split, {**cfg, "eval": ["knn"]}, device,
                                   cfg["seed"])
            log({"kind": "eval", "step": step, "epoch": epoch + 1, **knn})

    # export, then evaluate: every rank encodes its shard of each split, rank 0 writes the results
    if main_rank:
        save_encoder(model.encoder, out / "encoder.pt")
    results, baseline = {}, {}
    if cfg["eval"]:
        results = evaluate_encoder(model.encoder, train_split, test_split, cfg, device, cfg["seed"])
        # percentages only: the curves plot every number of an eval record on one percent axis
        log({"kind": "eval", "step": step, "epoch": cfg["epochs"],
             **{k: v for k, v in results.items() if not k.endswith("_epoch")}})
        if cfg["random_baseline"]:
            torch.manual_seed(cfg["seed"])  # the same random encoder on every rank
            random_encoder = Encoder(**model.encoder.config).to(device)
            baseline = evaluate_encoder(random_encoder, train_split, test_split, cfg, device, cfg["seed"])
    if main_rank:
        atomic_write_json({"epochs": cfg["epochs"], "steps": step, **results,
                           **{f"random_{k}": v for k, v in baseline.items()}}, out / "summary.json")
        writer.close()
        plot_curves(out)
        print_table(results, baseline)
        print(f"[igm] wrote {out}/encoder.pt, summary.json, curves.png")
    dist.cleanup()


if __name__ == "__main__":
    try:
        main()
    except (InputError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
