"""NW-UCLA Multiview Action 3D from the CTR-GCN json release (`all_sqe/aAA_sSS_eEE_vVV.json`).

Each file is {"file_name", "skeletons": T x 20 x 3 (Kinect v1 joints), "label": 1..10}.
Standard protocol (`ucla`): views 1 and 2 train, view 3 test. `ucla-val` is the validation
protocol for choosing settings without ever seeing view 3: train on view 1, validate on view 2.
One body (M = 1), centred like NTU
(joint 1, the spine, of frame 0 at the origin), zero padded to MAX_FRAMES = 300 frames: the
same T as every other igm_fast dataset; the longest NW-UCLA sequence has 201 frames (a longer
one would be resampled, see layout.centre_and_pad).
"""
import json
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from igm_fast.data import layout
from igm_fast.io import InputError

NUM_JOINTS, NUM_BODIES, MAX_FRAMES = 20, 1, 300
# Labels 1..10 are the ten NW-UCLA actions a01..a12 without a07 and a10, in this order.
ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
CLASS_NAMES = ("pick up with one hand", "pick up with two hands", "drop trash", "walk around", "sit down",
               "stand up", "donning", "doffing", "throw", "carry")
# benchmark name -> (train views, test views)
BENCHMARKS = {"ucla": ((1, 2), (3,)), "ucla-val": ((1,), (2,))}
NAME_PATTERN = re.compile(r"a(\d+)_s(\d+)_e(\d+)_v(\d+)")


def parse_name(name):
    """aAA_sSS_eEE_vVV -> dict(action, subject, episode, view) as ints."""
    match = NAME_PATTERN.fullmatch(name)
    if not match:
        raise InputError(f"{name}: not an NW-UCLA sample name (expected aAA_sSS_eEE_vVV)")
    return dict(zip(("action", "subject", "episode", "view"), map(int, match.groups())))


def read_sample(path):
    """One json file -> (skeleton (T, 20, 3) float32, 0-based label)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(data, dict) or "skeletons" not in data or "label" not in data:
        raise InputError(f"{path}: expected an object with keys 'skeletons' and 'label'")
    label = data["label"]
    if not isinstance(label, int) or not 1 <= label <= len(CLASS_NAMES):
        raise InputError(f"{path}: label must be an integer in 1..{len(CLASS_NAMES)}, found {label!r}")
    try:
        skeleton = np.asarray(data["skeletons"], dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{path}: 'skeletons' is not a T x {NUM_JOINTS} x 3 array of numbers") from None
    if skeleton.ndim != 3 or skeleton.shape[0] < 1 or skeleton.shape[1:] != (NUM_JOINTS, 3):
        raise InputError(f"{path}: 'skeletons' must be T x {NUM_JOINTS} x 3 with T >= 1, found {skeleton.shape}")
    if not np.isfinite(skeleton).all():
        raise InputError(f"{path}: 'skeletons' holds non-finite values")
    return skeleton, label - 1


def prepare(raw_dir, out_dir, progress=True):
    """Read every `*.json` under raw_dir (the all_sqe folder) and write `{out_dir}/ucla` and
    `{out_dir}/ucla-val` (see BENCHMARKS).

    Returns a summary dict: samples per split and the path written, per benchmark.
    """
    raw_dir = Path(raw_dir)
    paths = sorted(raw_dir.glob("*.json"))
    if not paths:
        raise InputError(f"{raw_dir}: no NW-UCLA *.json files (point --raw at the all_sqe folder)")
    by_view = {1: [], 2: [], 3: []}
    for path in tqdm(paths, desc="NW-UCLA", unit="file", disable=not progress):
        view = parse_name(path.stem)["view"]
        if view not in by_view:
            raise InputError(f"{path}: view {view}, NW-UCLA has views 1..3")
        skeleton, label = read_sample(path)
        if not np.abs(skeleton).any():
            raise InputError(f"{path}: every joint of every frame is zero")
        x, length = layout.centre_and_pad(skeleton[:, None], MAX_FRAMES)
        by_view[view].append((x, length, label, path.stem))
    summary = {}
    for name, (train_views, test_views) in BENCHMARKS.items():
        splits = {}
        for split, views in (("train", train_views), ("test", test_views)):
            samples = [s for v in views for s in by_view[v]]
            if not samples:
                raise InputError(f"{raw_dir}: no {split} samples for {name} (files of view "
                                 f"{' or '.join(map(str, views))})")
            x, lengths, labels, names = zip(*sorted(samples, key=lambda s: s[3]))
            splits[split] = (np.stack(x), lengths, labels, names)
        path = layout.write_dataset(Path(out_dir) / name, name, CLASS_NAMES, NUM_JOINTS, NUM_BODIES, MAX_FRAMES,
                                    splits)
        summary[name] = {"train": len(splits["train"][2]), "test": len(splits["test"][2]), "path": str(path)}
    return summary

