"""Semi-supervised protocol: finetune on a class-balanced labelled fraction of the training split.

The subset depends only on (labels, ratio, seed), never on the rank or the process, so every
DDP rank picks the identical samples.
"""
import numpy as np

from igm_fast.data.layout import Split


def labelled_subset(labels, ratio, seed=0):
    """Sorted indices: from each class, round(ratio * its count) samples (at least one), drawn by seed."""
    if not 0 < ratio <= 1:
        raise ValueError(f"labelled ratio must lie in (0, 1], got {ratio}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = max(1, int(round(ratio * len(members))))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def subset_split(split, indices):
    """A Split of the chosen samples (their frames are read into memory: a small fraction)."""
    return Split(x=np.ascontiguousarray(split.x[indices]), lengths=split.lengths[indices],
                 labels=split.labels[indices], names=[split.names[i] for i in indices], meta=split.meta)
