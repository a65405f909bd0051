"""NTU RGB+D 60/120 from the raw `.skeleton` files, equal to the standard SGN / CTR-GCN / MAMP pipeline.

The stages follow the reference scripts so that our npz files are drop-in replacements:

- `read_skeleton`       = get_raw_skes_data.py (parse; frames with no body dropped; per-body
                          joints, colours, frame interval, and motion when there are several bodies)
- `extract_actors`      = get_raw_denoised_data.py (length and spread denoising, bodies ranked by
                          motion, two-actor assignment by non-overlapping intervals, frames missing
                          both actors removed) + seq_transformation.seq_translation (centring)
- `preprocess`          = the above as one (frames, 150) array with the version's single-actor rule
- `pad_frames`          = seq_transformation.align_frames (zero padding to 300 frames)
- `split_names`         = seq_transformation.get_indices (same sample order as the reference)
- `prepare`             = the whole dataset, in parallel, to the MAMP npz and our own layout

The reference's quirks are kept on purpose, because the published numbers were produced with
them: a body's frame interval counts up from its first frame even when it later skips frames;
intervals that touch at one frame do not overlap; actor 2's interval always starts at frame 0;
a frame is "missing" when its coordinates *sum* to zero. The reference's motion-range filter
(denoising_by_motion) sits after a `return` in the original, so it never runs and is absent here.
"""
import multiprocessing
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from igm_fast.data import layout
from igm_fast.io import InputError

NUM_JOINTS = 25
MAX_FRAMES = 300  # the longest NTU recording; every npz row is padded to it
VALUES_PER_JOINT = 12  # x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState
VALUES_PER_BODY_LINE = 10  # bodyID clippedEdges 4 x hand state/confidence isRestricted leanX leanY trackingState

# Denoising thresholds of get_raw_denoised_data.py.
MAX_NOISE_LENGTH = 11  # a body seen in this many frames or fewer is noise
SPREAD_RATIO = 0.8  # a frame is noisy when x-range > 0.8 * y-range (a standing person is taller than wide)
NOISY_FRAME_RATIO = 0.69754  # a body with this share of noisy frames or more is dropped

NAME_PATTERN = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")

NTU120_CLASS_NAMES = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw",
    "sitting down", "standing up (from sitting position)", "clapping", "reading", "writing",
    "tear up paper", "wear jacket", "take off jacket", "wear a shoe", "take off a shoe",
    "wear on glasses", "take off glasses", "put on a hat/cap", "take off a hat/cap", "cheer up",
    "hand waving", "kicking something", "reach into pocket", "hopping (one foot jumping)", "jump up",
    "make a phone call/answer phone", "playing with phone/tablet", "typing on a keyboard",
    "pointing to something with finger", "taking a selfie", "check time (from watch)",
    "rub two hands together", "nod head/bow", "shake head", "wipe face", "salute",
    "put the palms together", "cross hands in front (say stop)", "sneeze/cough", "staggering",
    "falling", "touch head (headache)", "touch chest (stomachache/heart pain)",
    "touch back (backache)", "touch neck (neckache)", "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm", "punching/slapping other person",
    "kicking other person", "pushing other person", "pat on back of other person",
    "point finger at the other person", "hugging other person", "giving something to other person",
    "touch other person's pocket", "handshaking", "walking towards each other",
    "walking apart from each other",
    # NTU RGB+D 120 adds:
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball",
    "tennis bat swing", "juggling table tennis balls", "hush (quite)", "flick hair", "thumb up",
    "thumb down", "make ok sign", "make victory sign", "staple book", "counting money",
    "cutting nails", "cutting paper (using scissors)", "snapping fingers", "open bottle",
    "sniff (smell)", "squat down", "toss a coin", "fold paper", "ball up paper", "play magic cube",
    "apply cream on face", "apply cream on hand back", "put on bag", "take off bag",
    "put something into a bag", "take something out of a bag", "open a box",
    "move heavy objects", "shake fist", "throw up cap/hat", "hands up (both hands)", "cross arms",
    "arm circles", "arm swings", "running on the spot", "butt kicks (kick backward)",
    "cross toe touch", "side kick", "yawn", "stretch oneself", "blow nose",
    "hit other person with something", "wield knife towards other person",
    "knock over other person (hit with body)", "grab other person's stuff",
    "shoot at other person with a gun", "step on foot", "high-five", "cheers and drink",
    "carry something with other person", "take a photo of other person", "follow other person",
    "whisper in other person's ear", "exchange things with other person",
    "support somebody with hand", "finger-guessing game (playing rock-paper-scissors)",
)
CLASS_NAMES = {"ntu60": NTU120_CLASS_NAMES[:60], "ntu120": NTU120_CLASS_NAMES}
NTU60_SETUPS = 17  # NTU60 = setups 1..17, actions 1..60

NTU60_TRAIN_SUBJECTS = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89,
    91, 92, 93, 94, 95, 97, 98, 100, 103)
# benchmark -> (name field, train ids, test ids), ids in the reference's order: the reference
# stacks the samples of each id in turn, so rows are grouped by id, then in name order.
BENCHMARKS = {
    "ntu60-xsub": ("subject", NTU60_TRAIN_SUBJECTS,
                   tuple(i for i in range(1, 41) if i not in NTU60_TRAIN_SUBJECTS)),
    "ntu60-xview": ("camera", (2, 3), (1,)),
    "ntu120-xsub": ("subject", NTU120_TRAIN_SUBJECTS,
                    tuple(i for i in range(1, 107) if i not in NTU120_TRAIN_SUBJECTS)),
    "ntu120-xset": ("setup", tuple(range(2, 33, 2)), tuple(range(1, 33, 2))),
}
VERSIONS = {"ntu60": {"ntu60-xsub": "NTU60_XSub.npz", "ntu60-xview": "NTU60_XView.npz"},
            "ntu120": {"ntu120-xsub": "NTU120_XSub.npz", "ntu120-xset": "NTU120_XSet.npz"}}


class NoBodyError(InputError):
    """A well-formed file with no usable body: skipped by `prepare`, an error for `preprocess`."""


@dataclass
class Body:
    joints: np.ndarray  # (F*25, 3) float32 xyz, frame-major as the reference stacks them
    colors: np.ndarray  # (F, 25, 2) float32 colour-image coordinates
    interval: np.ndarray  # (F,) int64 kept-frame indices: first appearance + 0..F-1 (reference quirk)
    motion: np.float32 = None  # sum of per-coordinate variances; only when the file has >1 body


@dataclass
class Skeleton:
    path: Path
    num_frames: int  # frames kept (those with at least one body)
    bodies: dict  # body id (int) -> Body, in order of first appearance
    dropped_frames: list  # 0-based indices (in the file) of frames with no body


@dataclass
class Actors:
    joints: np.ndarray  # (T, 75) one actor or (T, 150) two, centred; the reference's own form
    body_ids: list  # per actor, the body ids placed in it, in order


def parse_name(name):
    """'S001C002P003R004A005' -> dict(setup=1, camera=2, subject=3, replication=4, action=5)."""
    match = NAME_PATTERN.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not an NTU sample name (SsssCcccPpppRrrrAaaa)")
    return dict(zip(("setup", "camera", "subject", "replication", "action"), map(int, match.groups())))


class _Lines:
    """A cursor over the lines of one file that reports errors by file and 1-based line."""

    def __init__(self, path, lines):
        self.path, self.lines, self.pos = path, lines, 0

    def error(self, line_index, message):
        return InputError(f"{self.path}:{line_index + 1}: {message}")

    def next(self, expected):
        if self.pos >= len(self.lines):
            raise self.error(self.pos, f"file ends early; expected {expected}")
        self.pos += 1
        return self.lines[self.pos - 1]

    def count(self, expected):
        value = self.next(expected).strip()
        if not (value.isascii() and value.isdigit()):
            raise self.error(self.pos - 1, f"expected {expected} (an integer >= 0), found {value!r}")
        return int(value)

    def skip(self, n, expected):
        if self.pos + n > len(self.lines):
            raise self.error(len(self.lines), f"file ends early; expected {expected}")
        self.pos += n


def read_skeleton(path):
    """Parse one `.skeleton` file (LF or CRLF) exactly as get_raw_skes_data does."""
    path = Path(path)
    try:
        text = path.read_text()  # universal newlines: CRLF reads as LF
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read as text ({e})") from None
    if not text.strip():
        raise InputError(f"{path}:1: empty file; expected the number of frames")
    lines = text.split("\n")
    if lines[-1] == "":  # the newline ending the last line
        lines.pop()
    cursor = _Lines(path, lines)
    num_frames = cursor.count("the number of frames")
    dropped, records = [], []  # records: (body id, kept-frame index, line index of its first joint)
    kept = -1
    for frame in range(num_frames):
        num_bodies = cursor.count(f"the number of bodies in frame {frame}")
        if num_bodies == 0:
            dropped.append(frame)
            continue
        kept += 1
        seen = set()
        for _ in range(num_bodies):
            info = cursor.next(f"a body line of frame {frame}").split()
            if len(info) != VALUES_PER_BODY_LINE or not (info[0].isascii() and info[0].isdigit()):
                raise cursor.error(cursor.pos - 1, f"expected a body line of {VALUES_PER_BODY_LINE} values "
                                   f"starting with the integer body id, found {len(info)} values")
            body_id = int(info[0])
            if body_id in seen:
                raise cursor.error(cursor.pos - 1, f"body {body_id} appears twice in frame {frame}")
            seen.add(body_id)
            num_joints = cursor.count("the number of joints")
            if num_joints != NUM_JOINTS:
                raise cursor.error(cursor.pos - 1, f"expected {NUM_JOINTS} joints, found {num_joints}")
            records.append((body_id, kept, cursor.pos))
            cursor.skip(NUM_JOINTS, f"{NUM_JOINTS} joint lines of body {body_id} in frame {frame}")
    for index in range(cursor.pos, len(cursor.lines)):
        if cursor.lines[index].strip():
            raise cursor.error(index, f"unexpected content after the last of {num_frames} frames")

    values = _joint_values(cursor, [r[2] for r in records])  # (records, 25, 12) float32
    bodies = {}
    for body_id in dict.fromkeys(r[0] for r in records):
        rows = [i for i, r in enumerate(records) if r[0] == body_id]
        first_frame = records[rows[0]][1]
        bodies[body_id] = Body(joints=np.ascontiguousarray(values[rows, :, 0:3].reshape(-1, 3)),
                               colors=np.ascontiguousarray(values[rows, :, 5:7]),
                               interval=first_frame + np.arange(len(rows), dtype=np.int64))
    if len(bodies) > 1:
        for body in bodies.values():
            body.motion = _motion(body.joints)
    return Skeleton(path=path, num_frames=kept + 1, bodies=bodies, dropped_frames=dropped)


def _joint_values(cursor, starts):
    """The 12 numbers of every joint line, (len(starts), 25, 12) float32, converted from the strings
    as the reference does. Fast path: one conversion of all lines; on failure, name the bad line."""
    indices = [s + j for s in starts for j in range(NUM_JOINTS)]
    fields = [cursor.lines[i].split() for i in indices]
    try:
        values = np.array(fields, dtype=np.float32).reshape(len(starts), NUM_JOINTS, VALUES_PER_JOINT)
    except ValueError:
        for index, tokens in zip(indices, fields):
            if len(tokens) != VALUES_PER_JOINT:
                raise cursor.error(index, f"expected a joint line of {VALUES_PER_JOINT} numbers, "
                                   f"found {len(tokens)} values") from None
            for token in tokens:
                try:
                    float(token)
                except ValueError:
                    raise cursor.error(index, f"expected {VALUES_PER_JOINT} numbers, found {token!r}") from None
        raise
    return values


def _motion(joints):
    """Sum of the variances of x, y and z over all frames and joints, in float32 like the reference
    (same call on the same (F*25, 3) C-ordered array, so the same rounding)."""
    return np.sum(np.var(joints, axis=0))


def _spread_valid_frames(joints):
    """Frames whose x-range <= 0.8 * y-range. The reference compares a float32 range with
    0.8 * float32 range in float64 (numpy 1.x scalar promotion); so do we."""
    points = joints.reshape(-1, NUM_JOINTS, 3)
    x_range = points[:, :, 0].max(1) - points[:, :, 0].min(1)
    y_range = points[:, :, 1].max(1) - points[:, :, 1].min(1)
    return np.flatnonzero(x_range.astype(np.float64) <= SPREAD_RATIO * y_range.astype(np.float64))


def denoise(bodies):
    """Bodies that survive denoising, ranked by motion (largest first): [(body id, Body)].

    get_raw_denoised_data.denoising_bodies_data: drop bodies seen in <= 11 frames; then, while more
    than one body is left, drop bodies whose share of noisy-spread frames is >= 0.69754 and lower
    the motion of the others to that of their valid frames (if smaller).
    """
    bodies = {i: b for i, b in bodies.items() if len(b.interval) > MAX_NOISE_LENGTH}
    if len(bodies) <= 1:
        return list(bodies.items())
    motion = {i: b.motion for i, b in bodies.items()}
    for body_id, body in list(bodies.items()):
        if len(bodies) == 1:
            break
        valid = _spread_valid_frames(body.joints)
        num_noisy = len(body.interval) - len(valid)
        if num_noisy == 0:
            continue
        if num_noisy / len(body.interval) >= NOISY_FRAME_RATIO:
            del bodies[body_id]
        else:
            valid_joints = body.joints.reshape(-1, NUM_JOINTS, 3)[valid].reshape(-1, 3)
            motion[body_id] = min(motion[body_id], _motion(valid_joints))
    # sorted() is stable with reverse=True too: equal motions keep their first-appearance order
    return sorted(bodies.items(), key=lambda item: motion[item[0]], reverse=True)


def _place(joints, body, columns):
    start, end = body.interval[0], body.interval[-1]
    joints[start:end + 1, columns] = body.joints.reshape(-1, NUM_JOINTS * 3)


def extract_actors(skeleton):
    """Denoise, assign bodies to at most two actors, drop empty frames, centre: the reference's
    output for one sample before padding, (T, 75) when one actor survives, else (T, 150)."""
    if not skeleton.bodies:
        raise NoBodyError(f"{skeleton.path}: no body in any of its frames")
    if len(skeleton.bodies) == 1:  # the reference neither denoises nor removes frames here
        joints, actor_ids = _one_actor(next(iter(skeleton.bodies.items())), skeleton.num_frames)
        return Actors(joints=_centre(skeleton.path, joints), body_ids=actor_ids)

    ranked = denoise(skeleton.bodies)
    if not ranked:
        raise NoBodyError(f"{skeleton.path}: every body lasts <= {MAX_NOISE_LENGTH} frames (noise)")
    if len(ranked) == 1:
        joints, actor_ids = _one_actor(ranked[0], skeleton.num_frames)
    else:
        joints, actor_ids = _two_actors(ranked, skeleton.num_frames)
    # remove_missing_frames: frames where no actor has data (coordinates summing to zero)
    joints = joints[joints.sum(axis=1) != 0]
    return Actors(joints=_centre(skeleton.path, joints), body_ids=actor_ids)


def _one_actor(item, num_frames):
    """get_one_actor_points: (num_frames, 75) with the body at its interval."""
    body_id, body = item
    joints = np.zeros((num_frames, 75), np.float32)
    _place(joints, body, slice(0, 75))
    return joints, [[body_id]]


def _two_actors(ranked, num_frames):
    """get_two_actors_points: actor 1 = the most moving body; each next body joins actor 1 if its
    interval does not overlap actor 1's, else actor 2 if it does not overlap actor 2's, else it is
    dropped. Intervals touching at one frame count as non-overlapping, and actor 2's interval
    starts as [0, 0] and stays anchored at 0, exactly as in the reference."""
    joints = np.zeros((num_frames, 150), np.float32)
    (first_id, first), rest = ranked[0], ranked[1:]
    _place(joints, first, slice(0, 75))
    ids1, ids2 = [first_id], []
    start1, end1 = first.interval[0], first.interval[-1]
    start2, end2 = 0, 0
    for body_id, body in rest:
        start, end = body.interval[0], body.interval[-1]
        if min(end1, end) - max(start1, start) <= 0:
            _place(joints, body, slice(0, 75))
            ids1.append(body_id)
            start1, end1 = min(start, start1), max(end, end1)
        elif min(end2, end) - max(start2, start) <= 0:
            _place(joints, body, slice(75, 150))
            ids2.append(body_id)
            start2, end2 = min(start, start2), max(end, end2)
    return joints, [ids1, ids2]


def _centre(path, joints):
    """seq_translation: subtract joint 2 (spine middle) of actor 1 in its first frame with data from
    every frame; an actor's frames without data (summing to zero) stay zero."""
    has_actor1 = np.flatnonzero(np.any(joints[:, :75] != 0, axis=1))
    if len(has_actor1) == 0:
        raise NoBodyError(f"{path}: actor 1 has all-zero coordinates")
    origin = joints[has_actor1[0], 3:6].copy()
    centred = joints - np.tile(origin, joints.shape[1] // 3)
    if joints.shape[1] == 150:  # the reference re-zeroes absent actors only in the two-actor layout
        for columns in (slice(0, 75), slice(75, 150)):
            centred[joints[:, columns].sum(axis=1) == 0, columns] = 0
    return centred


def preprocess(path, version="ntu60"):
    """One raw file -> float32 (frames, 150), denoised and centred, before padding. A single actor
    gets a zero second body for ntu60 and a copy of itself for ntu120, as the reference's
    align_frames of each version does."""
    if version not in VERSIONS:
        raise ValueError(f"unknown NTU version {version!r}; expected one of {sorted(VERSIONS)}")
    return _single_actor_rule(extract_actors(read_skeleton(path)).joints, version)


def _single_actor_rule(joints, version):
    if joints.shape[1] == 150:
        return joints
    return np.hstack([joints, joints if version == "ntu120" else np.zeros_like(joints)])


def pad_frames(rows, num_frames=MAX_FRAMES):
    """(T, 150) -> (num_frames, 150), zeros after the last frame (align_frames)."""
    if len(rows) > num_frames:
        raise ValueError(f"a sample has {len(rows)} frames, more than the {num_frames} NTU allows")
    out = np.zeros((num_frames, rows.shape[1]), np.float32)
    out[:len(rows)] = rows
    return out


def split_names(names, benchmark):
    """(train_names, test_names) in the reference's order: grouped by id in the benchmark's id order,
    then in the given order. Every name must belong to one side."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown NTU benchmark {benchmark!r}; expected one of {sorted(BENCHMARKS)}")
    field, train_ids, test_ids = BENCHMARKS[benchmark]
    rank = {i: (0, k) for k, i in enumerate(train_ids)} | {i: (1, k) for k, i in enumerate(test_ids)}
    keyed = []
    for order, name in enumerate(names):
        value = parse_name(name)[field]
        if value not in rank:
            raise ValueError(f"{name}: {field} {value} belongs to neither side of {benchmark}")
        keyed.append((rank[value], order, name))
    keyed.sort()
    return ([name for (side, _), _, name in keyed if side == 0],
            [name for (side, _), _, name in keyed if side == 1])


def read_name_list(path):
    """A list of sample names, one per line (blank lines ignored), e.g. the missing-skeleton list."""
    path = Path(path)
    try:
        lines = path.read_text().split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e})") from None
    names = []
    for number, line in enumerate(lines, 1):
        token = line.strip()
        if token and not NAME_PATTERN.fullmatch(token):
            raise InputError(f"{path}:{number}: expected an NTU sample name like S001C001P001R001A001, found {token!r}")
        if token:
            names.append(token)
    return names


def prepare(raw_dir, out_dir, version="ntu60", workers=2, missing_list=None, progress=True):
    """Preprocess every `.skeleton` under raw_dir; write for each benchmark of `version` the MAMP npz
    (`out_dir/NTU60_XSub.npz` ...) and the fast layout (`out_dir/ntu60-xsub/` ...). Returns a summary.

    All files are read before anything is written, so a bad input file (named in the error) leaves
    out_dir untouched; every output file or layout directory appears complete or not at all.
    """
    if version not in VERSIONS:
        raise ValueError(f"unknown NTU version {version!r}; expected one of {sorted(VERSIONS)}")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise InputError(f"{raw_dir}: raw skeleton directory not found")
    missing = set(read_name_list(missing_list)) if missing_list else set()
    paths, skipped, skip_counts = {}, [], {}

    def skip(name, category, reason):
        skipped.append(f"{name}: {reason}")
        skip_counts[category] = skip_counts.get(category, 0) + 1

    all_paths = sorted(raw_dir.rglob("*.skeleton"), key=lambda p: (p.name, p))  # the reference's name order
    for path in all_paths:
        name = path.stem
        if not NAME_PATTERN.fullmatch(name):
            raise InputError(f"{path}: file name is not an NTU sample name (SsssCcccPpppRrrrAaaa.skeleton)")
        if name in paths:
            raise InputError(f"{path}: sample {name} also at {paths[name]}")
        info = parse_name(name)
        if version == "ntu60" and (info["setup"] > NTU60_SETUPS or info["action"] > 60):
            skip(name, "not ntu60", "not an NTU60 sample (NTU120 only)")
        elif name in missing:
            skip(name, "missing skeleton", f"listed in {missing_list}")
        else:
            paths[name] = path
    if not paths:
        raise InputError(f"{raw_dir}: no usable .skeleton files found")

    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(paths)
    dropped_frames, kept = 0, []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".ntu_prepare.") as tmp:
        # All samples' rows in a sparse on-disk array: NTU120 padded is ~20 GB, never all in RAM.
        rows = _disk_array(Path(tmp) / "rows.npy", (len(names), MAX_FRAMES, 150))
        jobs = [(paths[name], version) for name in names]
        with multiprocessing.Pool(workers) if workers > 1 else _InProcess() as pool:
            results = pool.imap(_prepare_one, jobs, chunksize=8)
            for index, (joints, reason, num_dropped) in enumerate(
                    tqdm(results, total=len(jobs), desc=f"{version} skeletons", disable=not progress)):
                dropped_frames += num_dropped
                if joints is None:
                    skip(names[index], "no body", reason)
                else:
                    rows[index, :len(joints)] = joints
                    kept.append(index)
        row_of = {names[i]: i for i in kept}
        benchmarks = {}
        for benchmark, npz_name in VERSIONS[version].items():
            split = dict(zip(layout.SPLITS, split_names(list(row_of), benchmark)))
            benchmarks[benchmark] = {side: len(split[side]) for side in layout.SPLITS}
            _write_benchmark(Path(tmp), out_dir, version, benchmark, npz_name, rows, split, row_of)
    return dict(version=version, raw_files=len(all_paths), samples=len(kept), benchmarks=benchmarks,
                skipped_counts=skip_counts, skipped=skipped, dropped_empty_frames=dropped_frames)


class _InProcess:
    """The Pool interface without worker processes (workers=1: simple tracebacks, no fork)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, fn, jobs, chunksize=1):
        return map(fn, jobs)


def _prepare_one(job):
    """Worker: one raw file -> (rows (T, 150) or None, skip reason or None, count of dropped empty frames)."""
    path, version = job
    skeleton = read_skeleton(path)
    try:
        joints = extract_actors(skeleton).joints
    except NoBodyError as e:
        return None, str(e), len(skeleton.dropped_frames)
    if len(joints) > MAX_FRAMES:
        raise InputError(f"{path}: {len(joints)} frames after preprocessing; NTU samples have at most {MAX_FRAMES}")
    return _single_actor_rule(joints, version), None, len(skeleton.dropped_frames)


def _disk_array(path, shape):
    """A zero-filled float32 array backed by a sparse file (an empty one cannot be memory-mapped)."""
    if 0 in shape:
        return np.zeros(shape, np.float32)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)


def _write_benchmark(tmp, out_dir, version, benchmark, npz_name, rows, split, row_of):
    """Gather one benchmark's samples into per-split on-disk arrays in split order, then write the MAMP
    npz and the layout directory from them: both writers stream memory maps, nothing is loaded whole."""
    parts, npz_parts = {}, {}
    for side, names in split.items():
        n = len(names)
        side_rows = _disk_array(tmp / f"{benchmark}_{side}_rows.npy", (n, MAX_FRAMES, 150))
        x = _disk_array(tmp / f"{benchmark}_{side}_x.npy", (n, 3, MAX_FRAMES, NUM_JOINTS, 2))
        lengths = np.zeros(n, np.int64)
        for k, name in enumerate(names):
            side_rows[k] = rows[row_of[name]]
            x[k] = layout.from_mamp_rows(side_rows[k:k + 1], NUM_JOINTS, 2)[0]
            lengths[k] = layout.valid_lengths(x[k:k + 1])[0]
        labels = np.array([parse_name(name)["action"] - 1 for name in names], np.int64)
        parts[side] = (x, lengths, labels, names)
        # a (N,3,T,V,M) view of the rows: to_mamp_rows turns it back into the rows without a copy
        rows_view = side_rows.reshape(n, MAX_FRAMES, 2, NUM_JOINTS, 3).transpose(0, 4, 1, 3, 2)
        npz_parts[side] = (rows_view, labels, names)
    layout.write_mamp_npz(out_dir / npz_name, len(CLASS_NAMES[version]), npz_parts["train"], npz_parts["test"])
    layout.write_dataset(out_dir / benchmark, benchmark, CLASS_NAMES[version], NUM_JOINTS, 2, MAX_FRAMES, parts)
    for path in tmp.glob(f"{benchmark}_*.npy"):
        path.unlink()
