"""Dataset names -> prepared directories, and a torch Dataset over one prepared split.

A dataset name resolves to `{data_root}/{name}`, the directory `python -m igm_fast.data.prepare`
writes (layout described in igm_fast/data/layout.py). data_root defaults to the environment
variable IGM_DATA, else ./data_cache. `synth` (xsub) and `synth-xview` are generated there on
first use; every other dataset must have been prepared from its raw files.
"""
import os
import sys
from pathlib import Path

import numpy as np
import torch

from igm_fast.data import layout, synth
from igm_fast.io import InputError

# name -> the prepare command that produces it (the raw-data arguments the user fills in)
PREPARE_COMMANDS = {
    "ntu60-xsub": "ntu60 --raw NTU_SKELETON_DIR", "ntu60-xview": "ntu60 --raw NTU_SKELETON_DIR",
    "ntu120-xsub": "ntu120 --raw NTU_SKELETON_DIR", "ntu120-xset": "ntu120 --raw NTU_SKELETON_DIR",
    "pku1-xsub": "pku1 --skeletons DIR --labels DIR --splits DIR",
    "pku1-xview": "pku1 --skeletons DIR --labels DIR --splits DIR",
    "pku2-xsub": "pku2 --skeletons DIR --labels DIR --splits DIR",
    "pku2-xview": "pku2 --skeletons DIR --labels DIR --splits DIR",
    "ucla": "ucla --raw NW_UCLA_DIR/all_sqe", "ucla-val": "ucla --raw NW_UCLA_DIR/all_sqe",
}
SYNTH_BENCHMARKS = {synth.dataset_name(b): b for b in synth.BENCHMARKS}
DATASET_NAMES = (*SYNTH_BENCHMARKS, *PREPARE_COMMANDS)
# Size of the synth generated on first use: 12 classes x 200 = 2,400 samples, enough for the
# default CPU training run (the prepare CLI takes other sizes).
SYNTH_DEFAULTS = dict(seed=0, samples_per_class=200, num_subjects=20)


def default_data_root():
    return Path(os.environ.get("IGM_DATA") or "data_cache")


def resolve(name, data_root=None):
    """The prepared directory of a dataset: `{data_root}/{name}` (synth is generated there when
    absent; any other name prepared there, e.g. by `prepare npz --name`, is found too), else
    `name` itself as a path to a prepared directory."""
    root = Path(data_root) if data_root is not None else default_data_root()
    path = root / name
    if name in SYNTH_BENCHMARKS and not (path / "meta.json").is_file():
        print(f"generating the built-in {name} dataset into {path} (first use, a few seconds)", file=sys.stderr)
        # replace=False: when several ranks start together the first complete copy wins
        synth.prepare_synth(root, **SYNTH_DEFAULTS, benchmarks=(SYNTH_BENCHMARKS[name],), npz=False,
                            replace=False)
    if (path / "meta.json").is_file():
        return path
    if name in PREPARE_COMMANDS:
        raise InputError(f"{path}: dataset {name!r} is not prepared; run `python -m igm_fast.data.prepare "
                         f"{PREPARE_COMMANDS[name]} --out {root}` (or pass --data-root where it lives)")
    if (Path(name) / "meta.json").is_file():
        return Path(name)
    raise InputError(f"{name}: neither a dataset name ({', '.join(DATASET_NAMES)}), a dataset prepared "
                     f"under {root}, nor a prepared dataset directory (no meta.json there)")


def load_split(name, split, data_root=None):
    """Open split "train" or "test" of a dataset by name or path: a memory-mapped layout.Split."""
    return layout.open_split(resolve(name, data_root), split)


def generate_synth(root, seed=0, samples_per_class=8, num_subjects=6, benchmark="xsub"):
    """A small synth dataset for tests: writes `{root}/synth` (or `synth-xview`) and returns that dir,
    so both `load_split("synth", s, data_root=root)` and `load_split(returned_dir, s)` open it."""
    synth.prepare_synth(root, seed, samples_per_class, num_subjects, benchmarks=(benchmark,), npz=False)
    return Path(root) / synth.dataset_name(benchmark)


class SkeletonDataset(torch.utils.data.Dataset):
    """Per-sample access to a split: (x (3, T, V, M) float32 raw padded, length, label, index).

    Reads one sample from the memory map per item. When sent to DataLoader worker processes it
    pickles the file name, not the array, and each worker re-opens the memory map.
    """

    def __init__(self, split):
        self.lengths, self.labels = split.lengths, split.labels
        self._path = getattr(split.x, "filename", None)
        self._x = split.x

    def __getstate__(self):
        state = dict(self.__dict__)
        if self._path is not None:
            state["_x"] = None
        return state

    @property
    def x(self):
        if self._x is None:
            self._x = np.load(self._path, mmap_mode="r")
        return self._x

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return (torch.from_numpy(np.array(self.x[index], dtype=np.float32)), int(self.lengths[index]),
                int(self.labels[index]), index)
