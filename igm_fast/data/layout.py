"""The project's on-disk dataset layout, and the MAMP/CTR-GCN npz interchange format.

A prepared dataset is a directory:

    meta.json                 {"name", "num_classes", "num_joints", "num_bodies",
                               "max_frames", "class_names", "format_version",
                               "input_mean", "input_std"}  (per-axis statistics of the
                               training split's valid frames of present bodies)
    {split}_x.npy             float32 (N, 3, T, V, M), uncompressed: memory-mapped, never
                              loaded whole (T = max_frames, zero padded after the valid frames)
    {split}_len.npy           int64 (N,) valid frames per sample
    {split}_y.npy             int64 (N,) 0-based labels
    {split}_names.txt         one sample name per line (traceability, score fusion)

for split in ("train", "test"). `write_dataset` writes a whole directory at once (temp dir +
rename); `centre_and_pad` turns a raw (L, M, V, 3) sequence into one padded, NTU-centred sample.
The MAMP npz (`x_train (N, T, V*M*3)`, one-hot `y_train`, `x_test`, `y_test`) is the interchange
format: written by `prepare`, readable by `read_mamp_npz`.
"""
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igm_fast.io import InputError, atomic_path, atomic_write_json, atomic_write_text

FORMAT_VERSION = 1
SPLITS = ("train", "test")


@dataclass
class Split:
    """One split of a prepared dataset; `x` is a read-only memory map."""

    x: np.ndarray  # (N, 3, T, V, M) float32
    lengths: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int64
    names: list
    meta: dict

    def __len__(self):
        return len(self.labels)


def write_split(root, split, x, lengths, labels, names):
    """Write one split atomically file by file; x is (N, 3, T, V, M)."""
    root = Path(root)
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"{root}/{split}: x must be (N, 3, T, V, M), got {x.shape}")
    if not (len(lengths) == len(labels) == len(names) == n):
        raise ValueError(f"{root}/{split}: {n} samples but {len(lengths)} lengths, "
                         f"{len(labels)} labels, {len(names)} names")
    for suffix, arr in (("x", x), ("len", np.asarray(lengths, np.int64)), ("y", np.asarray(labels, np.int64))):
        with atomic_path(root / f"{split}_{suffix}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
    atomic_write_text("".join(f"{s}\n" for s in names), root / f"{split}_names.txt")


def write_meta(root, name, num_classes, num_joints, num_bodies, max_frames, class_names, input_mean=None,
               input_std=None):
    """meta.json; without input statistics, open_split computes them from the training split."""
    stats = {} if input_mean is None else dict(input_mean=[float(v) for v in input_mean],
                                                 input_std=[float(v) for v in input_std])
    atomic_write_json(dict(name=name, num_classes=int(num_classes), num_joints=int(num_joints),
                           num_bodies=int(num_bodies), max_frames=int(max_frames),
                           class_names=list(class_names), format_version=FORMAT_VERSION, **stats),
                      Path(root) / "meta.json")


def input_stats(x, lengths, chunk=1024):
    """Per-axis (mean, std) over the valid frames of present bodies of x (N, 3, T, V, M): the
    input normalisation of MacDiff (`input_mean`, `input_var`), computed on the training split.
    Reads x chunk by chunk in float64, so a memory map is never loaded whole."""
    total, sq, count = np.zeros(3), np.zeros(3), 0
    for begin in range(0, len(x), chunk):
        part = np.asarray(x[begin:begin + chunk], np.float64)
        frames = np.arange(part.shape[2])[None, :] < np.asarray(lengths[begin:begin + chunk])[:, None]  # (n, T)
        present = np.abs(part).sum(axis=(1, 3)) > 0  # (n, T, M): zero bodies are padding
        keep = (frames[:, :, None] & present)[:, None, :, None, :]  # (n, 1, T, 1, M)
        keep = np.broadcast_to(keep, part.shape)
        total += np.where(keep, part, 0).sum(axis=(0, 2, 3, 4))
        sq += np.where(keep, part * part, 0).sum(axis=(0, 2, 3, 4))
        count += keep[:, 0].sum()
    if count == 0:
        return np.zeros(3), np.ones(3)
    mean = total / count
    return mean, np.sqrt(np.maximum(sq / count - mean ** 2, 1e-12))


def read_meta(root):
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise InputError(f"{path}: not a prepared dataset (no meta.json); run `python -m igm_fast.data.prepare`")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON: {e}") from None
    need = ("name", "num_classes", "num_joints", "num_bodies", "max_frames", "class_names", "format_version")
    missing = [k for k in need if k not in meta]
    if missing:
        raise InputError(f"{path}: missing keys {missing}")
    if meta["format_version"] != FORMAT_VERSION:
        raise InputError(f"{path}: format_version {meta['format_version']}, this igm_fast reads {FORMAT_VERSION}")
    for key in ("input_mean", "input_std"):
        if key in meta and not (isinstance(meta[key], list) and len(meta[key]) == 3
                                and all(isinstance(v, (int, float)) for v in meta[key])):
            raise InputError(f"{path}: {key} must be a list of 3 numbers, found {meta[key]!r}")
    if "input_std" in meta and min(meta["input_std"]) <= 0:
        raise InputError(f"{path}: input_std must be positive, found {meta['input_std']}")
    return meta


def open_split(root, split):
    """Memory-map one split and validate its files against meta.json and each other."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    root = Path(root)
    meta = read_meta(root)

    def load(suffix, mmap):
        path = root / f"{split}_{suffix}.npy"
        if not path.is_file():
            raise InputError(f"{path}: missing")
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(f"{path}: unreadable or truncated .npy ({e})") from None

    x, lengths, labels = load("x", True), load("len", False), load("y", False)
    if "input_mean" not in meta:  # prepared before the statistics were stored: compute them now
        train_x, train_len = (x, lengths) if split == "train" else (
            np.load(root / "train_x.npy", mmap_mode="r"), np.load(root / "train_len.npy"))
        mean, std = input_stats(train_x, train_len)
        meta.update(input_mean=mean.tolist(), input_std=std.tolist())
    names_path = root / f"{split}_names.txt"
    if not names_path.is_file():
        raise InputError(f"{names_path}: missing")
    names = names_path.read_text().split("\n")[:-1]
    want = (3, meta["max_frames"], meta["num_joints"], meta["num_bodies"])
    if x.dtype != np.float32 or x.ndim != 5 or x.shape[1:] != want:
        raise InputError(f"{root / f'{split}_x.npy'}: expected float32 (N, {', '.join(map(str, want))}), "
                         f"found {x.dtype} {x.shape}")
    n = x.shape[0]
    for what, arr in (("len", lengths), ("y", labels), ("names", names)):
        if len(arr) != n:
            raise InputError(f"{root}/{split}_{what}: {len(arr)} entries for {n} samples")
    if n and (lengths.min() < 1 or lengths.max() > meta["max_frames"]):
        raise InputError(f"{root}/{split}_len.npy: lengths must lie in [1, {meta['max_frames']}]")
    if n and (labels.min() < 0 or labels.max() >= meta["num_classes"]):
        raise InputError(f"{root}/{split}_y.npy: labels must lie in [0, {meta['num_classes']})")
    return Split(x=x, lengths=lengths.astype(np.int64), labels=labels.astype(np.int64), names=names, meta=meta)


def to_mamp_rows(x):
    """(N, 3, T, V, M) -> MAMP rows (N, T, M*V*3): body-major, then joint, then xyz."""
    n, c, t, v, m = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 4, 3, 1).reshape(n, t, m * v * c))


def from_mamp_rows(rows, num_joints, num_bodies=2):
    """MAMP rows (N, T, M*V*3) -> (N, 3, T, V, M)."""
    n, t, _ = rows.shape
    return np.ascontiguousarray(rows.reshape(n, t, num_bodies, num_joints, 3).transpose(0, 4, 1, 3, 2))


def write_mamp_npz(path, num_classes, train, test):
    """train/test = (x (N,3,T,V,M), labels, names). Keys as MAMP plus names_train/names_test."""
    arrays = {}
    for split, (x, labels, names) in (("train", train), ("test", test)):
        arrays[f"x_{split}"] = to_mamp_rows(np.asarray(x, np.float32))
        arrays[f"y_{split}"] = np.eye(num_classes, dtype=np.float32)[np.asarray(labels, np.int64)]
        arrays[f"names_{split}"] = np.asarray(names)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def read_mamp_npz(path, num_joints=25, num_bodies=2):
    """Read a MAMP/CTR-GCN npz; returns {split: (x (N,3,T,V,M), labels, names or None)}."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:
        raise InputError(f"{path}: not a readable npz ({e})") from None
    out = {}
    for split in SPLITS:
        for key in (f"x_{split}", f"y_{split}"):
            if key not in data.files:
                raise InputError(f"{path}: missing key {key!r} (has {data.files})")
        rows, y = data[f"x_{split}"], data[f"y_{split}"]
        width = num_bodies * num_joints * 3
        if rows.ndim != 3 or rows.shape[2] != width:
            raise InputError(f"{path}: x_{split} must be (N, T, {width}), found {rows.shape}")
        if y.ndim == 2:
            labels = y.argmax(1)
        elif y.ndim == 1:
            labels = y
        else:
            raise InputError(f"{path}: y_{split} must be one-hot (N, C) or (N,), found {y.shape}")
        if len(labels) != len(rows):
            raise InputError(f"{path}: x_{split} has {len(rows)} rows but y_{split} has {len(labels)}")
        names = [str(s) for s in data[f"names_{split}"]] if f"names_{split}" in data.files else None
        out[split] = (from_mamp_rows(rows.astype(np.float32), num_joints, num_bodies), labels.astype(np.int64), names)
    return out


def valid_lengths(x):
    """Valid frames as MAMP counts them: frames whose coordinates are not all zero. x (N,3,T,V,M)."""
    return (x.sum(axis=(1, 3, 4)) != 0).sum(axis=1).astype(np.int64)


def write_dataset(root, name, class_names, num_joints, num_bodies, max_frames, splits, replace=True):
    """Write a whole prepared dataset as one unit: into a temp dir beside `root`, then renamed.

    `splits` maps "train"/"test" to (x, lengths, labels, names). Readers never see a half-written
    dataset. With replace=False an existing `root` wins (two ranks generating the same dataset at
    once both end up reading the first complete one); with replace=True it is swapped out.
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a dataset directory is shared
    try:
        for split, (x, lengths, labels, names) in splits.items():
            write_split(tmp, split, x, lengths, labels, names)
        mean, std = input_stats(splits["train"][0], splits["train"][1])
        write_meta(tmp, name, len(class_names), num_joints, num_bodies, max_frames, class_names, mean, std)
        if root.exists() and replace:
            old = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".old"))
            os.replace(root, old / root.name)
            os.replace(tmp, root)
            shutil.rmtree(old)
        elif not root.exists():
            try:
                os.rename(tmp, root)
            except OSError:  # another process renamed its complete copy in first
                if not (root / "meta.json").is_file():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def centre_and_pad(seq, max_frames, centre_joint=1):
    """A (L, M, V, 3) sequence as one padded sample: ((3, max_frames, V, M) float32, valid length).

    Centred as the NTU pipeline does: joint `centre_joint` of body 0, in the first frame where
    body 0 is present, moves to the origin; frames where a body is absent (all zero) stay zero.
    A sequence longer than max_frames is resampled to max_frames by uniform nearest-frame sampling
    (so it keeps its whole extent); a shorter one is zero padded after its last frame.
    """
    seq = np.asarray(seq, np.float64)
    present = np.abs(seq).sum(axis=(2, 3)) > 0  # (L, M)
    if not present[:, 0].any():
        raise ValueError("body 0 is absent in every frame: nothing to centre on")
    origin = seq[np.argmax(present[:, 0]), 0, centre_joint]
    seq = np.where(present[:, :, None, None], seq - origin, 0.0)
    if len(seq) > max_frames:
        seq = seq[np.linspace(0, len(seq) - 1, max_frames).round().astype(np.int64)]
    out = np.zeros((3, max_frames) + seq.shape[2:0:-1], np.float32)
    out[:, :len(seq)] = seq.transpose(3, 0, 2, 1)
    return out, len(seq)
