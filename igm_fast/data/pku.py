"""PKU-MMD phase I / II: action instances cut from per-video skeleton files by their label files.

Official formats (one file of each kind per video, named after the video, e.g. `0002-L.txt`):
- skeleton txt: one line per frame, 150 numbers = 2 bodies x 25 Kinect v2 joints x (x, y, z);
  an absent body is all zeros;
- label txt/csv: one line per action instance, `label,start,end,confidence`, label 1..51,
  frames 1-based and inclusive; the confidence (1 slight, 2 strong) is not used;
- split files (cross-subject / cross-view): a "Training videos:" header, a comma-separated list
  of video names, then "Validation videos:" (the official files spell it "Validataion") and a list.

Each instance becomes one sample (name `{video}_{start}_{end}`): the frames start..end, minus
frames where neither body is present (as the NTU pipeline drops them); if body 0 is absent in all
of them the two bodies swap so actor 1 is the present one; centred like NTU; padded to 300
frames, longer instances resampled to 300 (uniform frame sampling, see layout.centre_and_pad).
An instance with no skeleton in any of its frames is skipped and reported.
"""
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from igm_fast.data import layout
from igm_fast.io import InputError

NUM_JOINTS, NUM_BODIES, MAX_FRAMES = 25, 2, 300
VERSIONS = ("pku1", "pku2")
BENCHMARKS = {"xsub": "cross[-_]subject*.txt", "xview": "cross[-_]view*.txt"}
# The 51 PKU-MMD actions in label order (alphabetical, as in the dataset's Actions.xlsx).
CLASS_NAMES = (
    "bow", "brushing hair", "brushing teeth", "check time (from watch)", "cheer up", "clapping",
    "cross hands in front (say stop)", "drink water", "drop", "eat meal/snack", "falling",
    "giving something to other person", "hand waving", "handshaking", "hopping (one foot jumping)",
    "hugging other person", "jump up", "kicking other person", "kicking something",
    "make a phone call/answer phone", "pat on back of other person", "pickup", "playing with phone/tablet",
    "point finger at the other person", "pointing to something with finger", "punching/slapping other person",
    "pushing other person", "put on a hat/cap", "put something inside pocket", "reading", "rub two hands together",
    "salute", "sitting down", "standing up", "take off a hat/cap", "take off glasses", "take off jacket",
    "take out something from pocket", "taking a selfie", "tear up paper", "throw", "touch back (backache)",
    "touch chest (stomachache/heart pain)", "touch head (headache)", "touch neck (neckache)",
    "typing on a keyboard", "use a fan (with hand or paper)/feeling warm", "wear jacket", "wear on glasses",
    "wipe face", "writing",
)
SPLIT_HEADERS = re.compile(r"Training videos:(.*)Validata?ion videos:(.*)", re.S | re.I)


def read_skeleton(path):
    """A video's skeleton file -> (F, 2, 25, 3) float32."""
    path = Path(path)
    width = NUM_BODIES * NUM_JOINTS * 3
    frames = []
    lines = path.read_text().rstrip().splitlines()  # tolerate blank lines at the end, nowhere else
    for number, line in enumerate(lines, 1):
        values = line.split()
        if len(values) != width:
            raise InputError(f"{path}:{number}: expected {width} numbers (2 bodies x 25 joints x xyz), "
                             f"found {len(values)}")
        try:
            frames.append(np.array(values, dtype=np.float32))
        except ValueError:
            raise InputError(f"{path}:{number}: non-numeric value in {line.strip()[:60]!r}...") from None
    if not frames:
        raise InputError(f"{path}: empty skeleton file")
    frames = np.stack(frames)
    bad = np.flatnonzero(~np.isfinite(frames).all(axis=1))
    if bad.size:
        raise InputError(f"{path}:{bad[0] + 1}: non-finite value (nan or inf)")
    return frames.reshape(-1, NUM_BODIES, NUM_JOINTS, 3)


def read_labels(path, num_frames):
    """A video's label file -> [(0-based label, start, end)] with 1-based inclusive frames checked
    against the video's `num_frames`."""
    path = Path(path)
    instances = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = re.split(r"[,\s]+", line.strip())
            try:
                label, start, end, _confidence = map(int, fields)
            except ValueError:
                raise InputError(f"{path}:{number}: expected 'label,start,end,confidence' integers, "
                                 f"found {line.strip()!r}") from None
            if not 1 <= label <= len(CLASS_NAMES):
                raise InputError(f"{path}:{number}: label {label} outside 1..{len(CLASS_NAMES)}")
            if not 1 <= start <= end <= num_frames:
                raise InputError(f"{path}:{number}: frames {start}..{end} do not lie within the video's "
                                 f"1..{num_frames}")
            instances.append((label - 1, start, end))
    return instances


def read_split_file(path):
    """An official split file -> (training video names, validation video names)."""
    path = Path(path)
    match = SPLIT_HEADERS.search(path.read_text())
    if not match:
        raise InputError(f"{path}: expected a 'Training videos:' list followed by a "
                         f"'Validation videos:' (or 'Validataion videos:') list")
    train, test = ([v for v in re.split(r"[,\s]+", group) if v] for group in match.groups())
    both = set(train) & set(test)
    if both:
        raise InputError(f"{path}: videos listed for both training and validation: {sorted(both)[:5]}")
    return train, test


def cut_instance(video, start, end):
    """Frames start..end (1-based inclusive) of a (F, 2, 25, 3) video as a padded sample, or None
    when no body appears in any of them."""
    clip = video[start - 1:end]
    clip = clip[np.abs(clip).sum(axis=(1, 2, 3)) > 0]  # drop frames with no body
    if not len(clip):
        return None
    if not np.abs(clip[:, 0]).any():
        clip = clip[:, ::-1]
    return layout.centre_and_pad(clip, MAX_FRAMES)


def _find_split_file(splits_dir, benchmark):
    found = sorted(Path(splits_dir).glob(BENCHMARKS[benchmark]))
    if len(found) != 1:
        raise InputError(f"{splits_dir}: expected one {BENCHMARKS[benchmark]} split file, found "
                         f"{[p.name for p in found] or 'none'}")
    return found[0]


def _video_file(directory, video):
    for suffix in (".txt", ".csv"):
        path = Path(directory) / f"{video}{suffix}"
        if path.is_file():
            return path
    return None


def prepare(skeletons_dir, labels_dir, splits_dir, out_dir, version="pku1", progress=True):
    """Cut every instance of the videos named in the split files and write `{out_dir}/{version}-xsub`,
    `{version}-xview` (fast layout) and `PKU1_XSub.npz` etc. (MAMP format).

    Returns a summary: samples per split per benchmark, and skipped videos/instances with reasons.
    """
    if version not in VERSIONS:
        raise ValueError(f"unknown PKU-MMD version {version!r}; expected one of {VERSIONS}")
    split_lists = {b: read_split_file(_find_split_file(splits_dir, b)) for b in BENCHMARKS}
    videos = sorted({v for train, test in split_lists.values() for v in train + test})
    samples, skipped = {}, []  # samples: video -> [(x, length, label, name)]
    for video in tqdm(videos, desc=version, unit="video", disable=not progress):
        skeleton_path, label_path = _video_file(skeletons_dir, video), _video_file(labels_dir, video)
        if skeleton_path is None or label_path is None:
            skipped.append(f"{video}: no {'skeleton' if skeleton_path is None else 'label'} file")
            continue
        frames = read_skeleton(skeleton_path)
        samples[video] = []
        for label, start, end in read_labels(label_path, len(frames)):
            cut = cut_instance(frames, start, end)
            if cut is None:
                skipped.append(f"{video} frames {start}..{end}: no skeleton in any frame")
                continue
            x, length = cut
            # keep only the valid frames until the split is assembled: padded, PKU-MMD I is ~4 GB
            samples[video].append((x[:, :length].copy(), length, label, f"{video}_{start}_{end}"))
    summary = {"skipped": skipped}
    for benchmark, (train, test) in split_lists.items():
        splits = {}
        for split, names in (("train", train), ("test", test)):
            rows = [row for video in names for row in samples.get(video, [])]
            if not rows:
                raise InputError(f"{splits_dir}: the {benchmark} {split} videos yield no instances")
            clips, lengths, labels, sample_names = zip(*rows)
            x = np.zeros((len(clips), 3, MAX_FRAMES, NUM_JOINTS, NUM_BODIES), np.float32)
            for i, clip in enumerate(clips):
                x[i, :, :clip.shape[1]] = clip
            splits[split] = (x, lengths, labels, sample_names)
        name = f"{version}-{benchmark}"
        path = layout.write_dataset(Path(out_dir) / name, name, CLASS_NAMES, NUM_JOINTS, NUM_BODIES, MAX_FRAMES,
                                    splits)
        npz_path = Path(out_dir) / f"{version.upper()}_{'XSub' if benchmark == 'xsub' else 'XView'}.npz"
        layout.write_mamp_npz(npz_path, len(CLASS_NAMES), *[(x, y, n) for x, _, y, n in splits.values()])
        summary[name] = {"train": len(splits["train"][2]), "test": len(splits["test"][2]), "path": str(path),
                         "npz": str(npz_path)}
    return summary

