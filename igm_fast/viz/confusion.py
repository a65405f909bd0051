"""Row-normalised confusion matrix of a run's test predictions, with class names -> RUN/confusion.png."""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from igm_fast.viz import save_png
from igm_fast.viz.runs import class_names, eval_dir, load_npz


def confusion_matrix(pred, labels, num_classes):
    """counts[true, pred] / samples of that true class (rows of absent classes stay 0)."""
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (labels, pred), 1)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def plot_confusion(run_dir):
    source = eval_dir(run_dir, "test_scores.npz")
    scores, labels = load_npz(source / "test_scores.npz", ("scores", "labels"))
    num_classes = scores.shape[1]
    names = class_names(source, num_classes)
    matrix = confusion_matrix(scores.argmax(axis=1), labels, num_classes)
    size = max(6.0, 0.22 * num_classes + 3)  # NTU120 needs room for 120 names
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(num_classes)
    font = 8 if num_classes <= 30 else 5
    ax.set_xticks(ticks, names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, names, fontsize=font)
    if num_classes <= 20:  # readable cell values only for small class counts
        for i in range(num_classes):
            for j in range(num_classes):
                if matrix[i, j] >= 0.005:
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if matrix[i, j] > 0.5 else "black")
    top1 = 100.0 * (scores.argmax(axis=1) == labels).mean()
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion (row-normalised), top-1 {top1:.2f}%")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return save_png(fig, Path(run_dir) / "confusion.png")
