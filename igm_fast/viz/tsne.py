"""t-SNE of a run's test features, coloured by class -> RUN/tsne.png."""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.manifold import TSNE

from igm_fast.viz import save_png
from igm_fast.viz.runs import class_names, eval_dir, load_npz

MAX_POINTS = 3000  # t-SNE is quadratic-ish: a seeded subsample keeps big test sets quick


def plot_tsne(run_dir, seed=0):
    source = eval_dir(run_dir, "test_features.npz")
    feats, labels = load_npz(source / "test_features.npz", ("features", "labels"))
    names = class_names(source, int(labels.max()) + 1)
    if len(labels) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), MAX_POINTS, replace=False))
        feats, labels = feats[keep], labels[keep]
    perplexity = float(min(30.0, max(2.0, (len(labels) - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(feats)
    fig, ax = plt.subplots(figsize=(8, 7))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for c in np.unique(labels):
        pts = xy[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=8, color=cmap(c % cmap.N), label=names[c])
    if len(np.unique(labels)) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="best")
    ax.set(title=f"t-SNE of test features ({len(labels)} samples)", xticks=[], yticks=[])
    return save_png(fig, Path(run_dir) / "tsne.png")
