"""One generator step on a test sample: noisy x_t, the one-step estimate x0_hat, and the original,
side by side at a few frames (front view) -> RUN/denoise.png.

Uses the run's training checkpoint (generator and adapter are not in encoder.pt) and the model's
own parts in IGM.forward's order: encode the visible tokens (the run's mask ratio, seeded), condition,
MDFF adapter, q_sample at timestep t, eps_hat, x0_hat clamped to the clean sample's range.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from igm_fast.data.dataset import load_split
from igm_fast.data.loader import SkeletonLoader
from igm_fast.data.skeletons import skeleton_for
from igm_fast.eval.semi import subset_split
from igm_fast.io import InputError, load_checkpoint
from igm_fast.model.encoder import patchify, unpatchify
from igm_fast.model.igm import condition
from igm_fast.viz import save_png

NUM_PANELS = 4  # frames shown per row


@torch.no_grad()
def one_step(model, x, t, seed=0):
    """(x_t, x0_hat) as (N, 3, T, V, M) in x's units, for clean x at integer timestep t."""
    gen = torch.Generator().manual_seed(seed)
    x0 = patchify(model.encoder.normalize(x), model.t_patch)  # the diffusion runs on standardised input
    B, L, _ = x0.shape
    keep = model.encoder.sample_keep(B, model.mask_ratio, x.device, gen) if model.mask_ratio > 0 else None
    cond = model.adapter(condition(model.encoder.encode_patches(x0, keep), keep, L))
    steps = torch.full((B,), t, dtype=torch.long)
    x_t = model.diffusion.q_sample(x0, steps, torch.randn(x0.shape, generator=gen))
    eps_hat = model.generator(x_t, steps, cond)
    x0_hat = model.diffusion.predict_x0(x_t, steps, eps_hat).clamp(x0.min(), x0.max())
    shape = (x.shape[4], x.shape[3], model.t_patch)
    return model.encoder.denormalize(unpatchify(x_t, *shape)), model.encoder.denormalize(unpatchify(x0_hat, *shape))


def load_run_model(run_dir):
    from igm_fast.train import build_model  # the trainer's own constructor: same config -> same model

    path = Path(run_dir) / "checkpoint_last.pt"
    ckpt = load_checkpoint(path, ("config", "model", "encoder_config"))
    model = build_model({**ckpt["config"], "kernels": "eager"}, ckpt["encoder_config"])  # joints + input stats
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise InputError(f"{path}: weights do not match the model its config describes: {e}") from None
    return model.eval(), ckpt["config"]


def plot_denoise(run_dir, t=300, index=0, seed=0):
    model, cfg = load_run_model(run_dir)
    if not 0 <= t < model.diffusion.steps:
        raise ValueError(f"t={t} outside [0, {model.diffusion.steps})")
    split = load_split(cfg["dataset"], "test", cfg.get("data_root"))
    if not 0 <= index < len(split):
        raise ValueError(f"index {index} outside the {len(split)} test samples")
    one = subset_split(split, [index])
    x = next(iter(SkeletonLoader(one, 1, train=False, device="cpu", out_frames=cfg["out_frames"])))[0]
    x_t, x0_hat = one_step(model, x, t, seed)  # x: the eval view (centre crop 0.95, no rotation)
    rows = (("noisy x_t", x_t[0].numpy()), ("x0_hat (one step)", x0_hat[0].numpy()), ("original", x[0].numpy()))
    frames = torch.linspace(0, x.shape[2] - 1, NUM_PANELS).round().long().tolist()
    skeleton = skeleton_for(x.shape[3])
    bodies = [m for m in range(x.shape[4]) if x[0, ..., m].abs().sum() > 0]
    lo, hi = (x[0, :2].amin(dim=(1, 2, 3)) - 0.2).tolist(), (x[0, :2].amax(dim=(1, 2, 3)) + 0.2).tolist()
    fig, axes = plt.subplots(3, NUM_PANELS, figsize=(3 * NUM_PANELS, 9), squeeze=False)
    for r, (label, seq) in enumerate(rows):
        for c, f in enumerate(frames):
            ax = axes[r, c]
            for m in bodies:
                for v, p in skeleton.bones:
                    ax.plot([seq[0, f, v, m], seq[0, f, p, m]], [seq[1, f, v, m], seq[1, f, p, m]],
                            color=("tab:blue", "tab:red")[m % 2], lw=1.5)
                ax.plot(seq[0, f, :, m], seq[1, f, :, m], "o", ms=2, color="black")
            ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), aspect="equal", xticks=[], yticks=[])
            if c == 0:
                ax.set_ylabel(label)
            if r == 0:
                ax.set_title(f"frame {f + 1}")
    fig.suptitle(f"{split.names[index]}: one generator step at t={t} of {model.diffusion.steps}")
    return save_png(fig, Path(run_dir) / "denoise.png")
