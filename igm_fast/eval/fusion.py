"""Score fusion across streams (joint / bone / motion) or runs: weighted sum of per-class scores.

Every eval run writes `test_scores.npz` (names, scores = class probabilities (N, C), labels);
runs are aligned by sample name, so their row orders may differ.
"""
from pathlib import Path

import numpy as np

from igm_fast.io import InputError, atomic_path

SCORES_FILE = "test_scores.npz"


def write_scores(path, names, scores, labels):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, names=np.asarray(names), scores=np.asarray(scores, np.float32),
                     labels=np.asarray(labels, np.int64))


def read_scores(path):
    """(names list, scores (N, C), labels (N,)) from an eval run dir or a scores .npz."""
    path = Path(path)
    if path.is_dir():
        path = path / SCORES_FILE
    try:
        data = np.load(path, allow_pickle=False)
        names, scores, labels = [str(s) for s in data["names"]], data["scores"], data["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: not a test-scores file with names, scores, labels ({e})") from None
    if scores.ndim != 2 or not (len(names) == len(scores) == len(labels)):
        raise InputError(f"{path}: expected names (N,), scores (N, C), labels (N,); "
                         f"found {len(names)}, {scores.shape}, {labels.shape}")
    if len(set(names)) != len(names):
        raise InputError(f"{path}: duplicate sample names")
    return names, scores, labels, path


def fuse(sources, weights=None):
    """Weighted sum of the sources' scores, rows in the first source's order.

    Returns (names, fused scores, labels). Every source must hold exactly the same samples with
    the same labels and class count.
    """
    weights = [1.0] * len(sources) if weights is None else [float(w) for w in weights]
    if len(weights) != len(sources):
        raise ValueError(f"{len(sources)} score sources but {len(weights)} weights")
    names, fused, labels, first = read_scores(sources[0])
    fused = weights[0] * fused.astype(np.float64)
    for source, weight in zip(sources[1:], weights[1:]):
        other_names, scores, other_labels, path = read_scores(source)
        row = {name: i for i, name in enumerate(other_names)}
        if set(row) != set(names):
            missing = sorted(set(names) ^ set(row))[:5]
            raise InputError(f"{path}: holds different samples than {first} (e.g. {missing})")
        if scores.shape[1] != fused.shape[1]:
            raise InputError(f"{path}: {scores.shape[1]} classes, {first} has {fused.shape[1]}")
        order = np.array([row[name] for name in names])
        if not np.array_equal(other_labels[order], labels):
            raise InputError(f"{path}: labels disagree with {first} for the same sample names")
        fused += weight * scores[order]
    return names, fused, labels
