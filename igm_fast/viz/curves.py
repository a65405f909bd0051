"""Loss / learning-rate / evaluation curves from a run's metrics.jsonl (contract 5) -> curves.png."""
from pathlib import Path

import matplotlib.pyplot as plt

from igm_fast.io import InputError, read_jsonl
from igm_fast.viz import save_png

LOSS_KEYS = ("loss", "loss_gen", "loss_feat", "loss_dist")


def read_metrics(path):
    """Records of metrics.jsonl; a malformed line is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no metrics.jsonl (is this a training run directory?)")
    records = []
    for lineno, rec in read_jsonl(path, "training metrics"):
        if rec.get("kind") not in ("train", "eval") or "step" not in rec:
            raise InputError(f"{path}:{lineno}: expected an object with kind 'train' or 'eval' and a step")
        records.append(rec)
    return records


def series(records, kind, key):
    points = [(r["step"], r[key]) for r in records if r["kind"] == kind and isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(run_dir):
    """Draw run_dir/curves.png: losses (log scale), lr, and every eval metric over steps."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    eval_keys = sorted({k for r in records if r["kind"] == "eval" for k, v in r.items()
                        if k not in ("kind", "step", "epoch") and isinstance(v, (int, float))})
    fig, (ax_loss, ax_lr, ax_eval) = plt.subplots(1, 3, figsize=(15, 4))
    for key in LOSS_KEYS:
        steps, values = series(records, "train", key)
        if steps:
            ax_loss.plot(steps, values, label=key)
    if ax_loss.lines and all(min(line.get_ydata()) > 0 for line in ax_loss.lines):
        ax_loss.set_yscale("log")
    ax_loss.set(title="training losses", xlabel="step")
    ax_lr.plot(*series(records, "train", "lr"))
    ax_lr.set(title="learning rate", xlabel="step")
    for key in eval_keys:
        ax_eval.plot(*series(records, "eval", key), marker="o", label=key)
    ax_eval.set(title="evaluation (%)", xlabel="step")
    for ax in (ax_loss, ax_eval):
        if ax.lines:
            ax.legend(fontsize=8)
    for ax in (ax_loss, ax_lr, ax_eval):
        ax.grid(alpha=0.3)
    fig.suptitle(run_dir.name)
    return save_png(fig, run_dir / "curves.png")
