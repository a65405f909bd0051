"""synth: the built-in dataset, generated procedurally by forward kinematics on the NTU skeleton.

Each sample is one action performed by one (or two) of `num_subjects` virtual subjects, seen
by one of three cameras, at 30 fps. What varies and how:
- subject: overall height and per-segment proportions, plus a personal speed and amplitude bias;
- sample: speed, amplitude, phase, handedness (one-arm actions), duration 40..300 frames, an
  idle lead-in and lead-out of random length, slow random sway (2-12 degrees) on every joint
  angle, facing jitter, camera pitch and yaw jitter;
- view: camera yaw 0, +45, -45 degrees (like NTU's three cameras);
- sensor noise: Gaussian jitter on every joint of every frame plus a fixed per-sample offset.
The variation is tuned so classes are learnable but not trivial: a logistic regression on raw
coordinates of 16 frames reaches about 83% (xsub) with the defaults, a random-init
cpu-small encoder about 49% by KNN: far from 100%, with room for pretraining to show.
Every sample draws from its own numpy Generator keyed by (seed, class, index within class), so
a sample does not change when `samples_per_class` does.

Output matches the NTU fast layout: (N, 3, 300, 25, 2) float32, absent body all zeros, frames
after the valid length zero, centred on joint 2 (index 1, spine middle) of actor 1 in frame 0.
Splits: xsub by subject (30% of subjects test), xview by camera (camera 1 test, as NTU).
"""
from pathlib import Path

import numpy as np

from igm_fast.data import layout
from igm_fast.data.skeletons import NTU25

CLASS_NAMES = ("wave", "raise both hands", "clap", "punch", "kick", "squat", "jump", "bow",
               "turn around", "walk in place", "handshake", "push")
TWO_PERSON = {"handshake", "push"}
NUM_JOINTS, NUM_BODIES, MAX_FRAMES, FPS = 25, 2, 300, 30.0
CAMERA_YAW_DEG = (0.0, 45.0, -45.0)
BENCHMARKS = ("xsub", "xview")

# Forward kinematics walks the NTU joint tree (igm_fast.data.skeletons.NTU25) from the spine base.
# 0 spine base, 1 spine mid, 2 neck, 3 head, 4-7 left shoulder/elbow/wrist/hand, 8-11 right,
# 12-15 left hip/knee/ankle/foot, 16-19 right, 20 spine shoulder, 21/22 left hand tip/thumb, 23/24 right.


def _rooted_tree(skeleton, root):
    """(parent of every joint, joints in parent-before-child order) of the skeleton's bones hung from root."""
    neighbours = {v: set() for v in range(skeleton.num_joints)}
    for a, b in skeleton.bones:
        neighbours[a].add(b)
        neighbours[b].add(a)
    parents, order = {root: -1}, [root]
    for v in order:  # breadth first: order grows while we walk it
        for n in sorted(neighbours[v] - parents.keys()):
            parents[n] = v
            order.append(n)
    return tuple(parents[v] for v in range(skeleton.num_joints)), tuple(order)


PARENTS, FK_ORDER = _rooted_tree(NTU25, root=0)

# Rest pose (standing, arms down) in the body frame: x = body's left, y = up, z = forward; metres.
# Each row is the bone from the joint's parent (PARENTS) to the joint; a hand tip hangs off the thumb.
REST_BONES = np.array([
    [0, 0, 0], [0, .28, 0], [0, .08, 0], [0, .12, 0],                              # root, spine mid, neck, head
    [.17, -.03, 0], [0, -.27, 0], [0, -.25, 0], [0, -.08, 0],                      # left arm
    [-.17, -.03, 0], [0, -.27, 0], [0, -.25, 0], [0, -.08, 0],                     # right arm
    [.08, -.05, 0], [0, -.42, 0], [0, -.40, 0], [0, -.05, .12],                    # left leg
    [-.08, -.05, 0], [0, -.42, 0], [0, -.40, 0], [0, -.05, .12],                   # right leg
    [0, .22, 0], [0, -.04, -.03], [0, -.03, .03], [0, -.04, -.03], [0, -.03, .03],  # spine shoulder, tip, thumb
])
SEGMENTS = {"torso": (1, 2, 3, 20), "arms": (5, 6, 7, 9, 10, 11, 21, 22, 23, 24),
            "legs": (13, 14, 15, 17, 18, 19), "shoulders": (4, 8), "hips": (12, 16)}
L_ELBOW, L_WRIST, R_ELBOW, R_WRIST = 5, 6, 9, 10
L_KNEE, L_ANKLE, R_KNEE, R_ANKLE = 13, 14, 17, 18
SPINE_MID, SPINE_SHOULDER, NECK = 1, 20, 2


def _rot(axis, angle):
    """Rotation matrices about a coordinate axis for an array of angles: (..., 3, 3)."""
    c, s = np.cos(angle), np.sin(angle)
    o, z = np.ones_like(angle), np.zeros_like(angle)
    rows = {"x": ((o, z, z), (z, c, -s), (z, s, c)),
            "y": ((c, z, s), (z, o, z), (-s, z, c)),
            "z": ((c, -s, z), (s, c, z), (z, z, o))}[axis]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def forward_kinematics(bones, angles, root_yaw, root_pos):
    """Joint positions (T, 25, 3) from bone vectors (25, 3) and per-frame joint angles (T, 25, 3).

    angles[:, j] = (about x, about z, about y) of the bone parent(j) -> j relative to its parent's
    bone frame, applied as Ry @ Rz @ Rx: flexion (x) first, then abduction (z), then twist (y).
    Rotations only, so every bone keeps its length in every frame.
    """
    local = _rot("y", angles[..., 2]) @ _rot("z", angles[..., 1]) @ _rot("x", angles[..., 0])
    frames = np.empty_like(local)
    pos = np.empty(angles.shape[:2] + (3,))
    for j in FK_ORDER:
        p = PARENTS[j]
        if p < 0:
            frames[:, j] = _rot("y", root_yaw) @ local[:, j]
            pos[:, j] = root_pos
        else:
            frames[:, j] = frames[:, p] @ local[:, j]
            pos[:, j] = pos[:, p] + frames[:, j] @ bones[j]
    return pos


def subject_bones(seed, subject):
    """Per-subject body: overall scale and per-segment proportions, and personal speed/amplitude."""
    rng = np.random.default_rng([seed, 1_000_003, subject])
    bones = REST_BONES * rng.uniform(0.88, 1.12)
    for joints in SEGMENTS.values():
        bones[list(joints)] *= rng.uniform(0.92, 1.08)
    return bones, rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)


class _Motion:
    """Joint angles and root trajectory of one actor over T frames, filled in by an action.

    An angle at joint j turns the bone that ends at j: flex(L_ELBOW) swings the left upper arm,
    flex(L_WRIST) bends the left elbow, flex(L_KNEE) lifts the thigh, flex(L_ANKLE) the shin.
    """

    def __init__(self, t):
        self.angles = np.zeros((len(t), NUM_JOINTS, 3))
        self.yaw = np.zeros(len(t))
        self.pos = np.zeros((len(t), 3))

    def flex(self, joint, a):  # bone swings forward (arms, thighs) / the spine bends forward
        self.angles[:, joint, 0] += -a if joint not in (SPINE_MID, SPINE_SHOULDER, NECK) else a

    def abduct(self, joint, a, left):  # bone swings out to the body's side
        self.angles[:, joint, 1] += a if left else -a

    def twist(self, joint, a, left):  # a forward-pointing bone swings out horizontally
        self.angles[:, joint, 2] += a if left else -a

    def squat(self, a, bones):
        """Hips flex by a, knees by 2a, root lowered so the feet stay on the ground."""
        for knee, ankle in ((L_KNEE, L_ANKLE), (R_KNEE, R_ANKLE)):
            self.flex(knee, a)
            self.flex(ankle, -2 * a)
        leg = np.linalg.norm(bones[L_KNEE]) + np.linalg.norm(bones[L_ANKLE])
        self.pos[:, 1] -= leg * (1 - np.cos(a))


def _bumps(u, reps):
    """Smooth 0 -> 1 -> 0 pulses, `reps` of them over u in [0, 1]."""
    return np.sin(np.pi * np.clip(u * reps, 0, reps) % 1.0) ** 2


def _actor_motions(action, t, u, amp, rng, bones):
    """Motions of actor 1 (and actor 2 for two-person actions). t: seconds (speed-scaled), u: 0..1."""
    deg = np.pi / 180
    hz = rng.uniform(0.8, 1.3)
    phase = rng.uniform(0, 2 * np.pi)
    osc = np.sin(2 * np.pi * hz * t + phase)
    left = bool(rng.integers(2))  # which arm/leg performs one-sided actions
    reps = max(1, int(round(u.size / FPS * hz / 2)))
    a = _Motion(t)
    if action == "wave":
        elbow, wrist = (L_ELBOW, L_WRIST) if left else (R_ELBOW, R_WRIST)
        a.abduct(elbow, np.full_like(t, amp * 85 * deg), left)
        a.abduct(wrist, (80 + 30 * amp * osc) * deg, left)
    elif action == "raise both hands":
        lift = _bumps(u, reps) * min(amp, 1.05) * 160 * deg  # overhead, never past it
        for elbow, side in ((L_ELBOW, True), (R_ELBOW, False)):
            a.abduct(elbow, lift, side)
    elif action == "clap":
        for elbow, wrist, side in ((L_ELBOW, L_WRIST, True), (R_ELBOW, R_WRIST, False)):
            a.flex(elbow, np.full_like(t, 75 * deg))
            a.flex(wrist, np.full_like(t, 20 * deg))
            a.twist(elbow, (-18 + 40 * amp * (0.5 + 0.5 * osc)) * deg, side)
    elif action == "punch":
        hit = np.maximum(osc, 0) ** 2 * amp
        elbow, wrist = (L_ELBOW, L_WRIST) if left else (R_ELBOW, R_WRIST)
        a.flex(elbow, (40 + 50 * hit) * deg)
        a.flex(wrist, (120 - 120 * hit) * deg)
        other_elbow, other_wrist = (R_ELBOW, R_WRIST) if left else (L_ELBOW, L_WRIST)
        a.flex(other_elbow, np.full_like(t, 40 * deg))  # guard
        a.flex(other_wrist, np.full_like(t, 110 * deg))
    elif action == "kick":
        kick = np.maximum(osc, 0) ** 2 * amp
        knee, ankle = (L_KNEE, L_ANKLE) if left else (R_KNEE, R_ANKLE)
        a.flex(knee, 80 * kick * deg)
        a.flex(ankle, -40 * (1 - kick) * kick * 4 * deg)  # knee bends on the way, straight at the top
        a.flex(SPINE_MID, -10 * kick * deg)  # lean back for balance
    elif action == "squat":
        a.squat(_bumps(u, reps) * amp * 70 * deg, bones)
        a.flex(SPINE_MID, _bumps(u, reps) * 30 * deg)
        for elbow in (L_ELBOW, R_ELBOW):
            a.flex(elbow, _bumps(u, reps) * 80 * deg)
    elif action == "jump":
        cycle = (hz * t + phase / (2 * np.pi)) % 1.0
        crouch = np.sin(np.pi * np.clip(cycle / 0.4, 0, 1)) ** 2
        air = np.sin(np.pi * np.clip((cycle - 0.4) / 0.4, 0, 1))
        a.squat(crouch * 40 * deg, bones)
        a.pos[:, 1] += air * amp * 0.3
        for elbow in (L_ELBOW, R_ELBOW):
            a.flex(elbow, (air * 120 - crouch * 30) * amp * deg)
    elif action == "bow":
        bend = _bumps(u, reps) * amp * 70 * deg
        a.flex(SPINE_MID, bend * 0.6)
        a.flex(SPINE_SHOULDER, bend * 0.4)
        a.flex(NECK, bend * 0.2)
    elif action == "turn around":
        progress = 0.5 - 0.5 * np.cos(np.pi * u)  # smooth 0 -> 1
        a.yaw = progress * rng.choice([-1, 1]) * amp * np.pi
        step = np.maximum(np.sin(2 * np.pi * 2 * hz * t), 0)
        a.flex(L_KNEE, step * 20 * deg)
        a.flex(R_KNEE, np.roll(step, int(FPS / (4 * hz))) * 20 * deg)
    elif action == "walk in place":
        for knee, ankle, elbow, sign in ((L_KNEE, L_ANKLE, R_ELBOW, 1), (R_KNEE, R_ANKLE, L_ELBOW, -1)):
            lift = np.maximum(sign * osc, 0) * amp
            a.flex(knee, lift * 45 * deg)
            a.flex(ankle, -lift * 70 * deg)
            a.flex(elbow, sign * osc * amp * 25 * deg)
        a.pos[:, 1] += 0.02 * np.abs(osc)
    if action not in TWO_PERSON:
        return [a]
    b = _Motion(t)
    reach = _bumps(u, reps)
    if action == "handshake":
        shake = 1 + 0.25 * np.sin(2 * np.pi * 3 * hz * t)
        for m in (a, b):
            m.flex(R_ELBOW, reach * 45 * amp * shake * deg)
            m.flex(R_WRIST, reach * 40 * deg)
            m.pos[:, 2] += reach * 0.15  # step in
    else:  # push: actor 1 thrusts both arms, actor 2 staggers back and leans
        thrust = reach * amp
        for elbow, wrist in ((L_ELBOW, L_WRIST), (R_ELBOW, R_WRIST)):
            a.flex(elbow, (50 + 35 * thrust) * deg)
            a.flex(wrist, (90 - 90 * thrust) * deg)
        a.pos[:, 2] += thrust * 0.3  # step in to reach
        hit = np.clip(np.cumsum(np.maximum(np.diff(reach, prepend=0), 0)) / reps, 0, 1)
        b.pos[:, 2] -= hit * amp * 0.4
        b.flex(SPINE_MID, -15 * reach * deg)
        b.abduct(L_ELBOW, reach * 30 * deg, True)
        b.abduct(R_ELBOW, reach * 30 * deg, False)
    return [a, b]


def _activity_window(u, rng):
    """1 while the action runs, easing to 0 (rest pose) in an idle lead-in and lead-out of random length."""
    onset, offset = rng.uniform(0, 0.25), rng.uniform(0.75, 1.0)
    ramp = np.clip(np.minimum(u - onset, offset - u) / 0.08, 0, 1)
    return ramp * ramp * (3 - 2 * ramp)


def _sample(seed, label, index, subjects, camera, sensor_noise):
    """One sample: (positions (M', L, 25, 3) in camera space, L), M' = 1 or 2 actors."""
    rng = np.random.default_rng([seed, label, index])
    action = CLASS_NAMES[label]
    length = int(np.clip(np.exp(rng.normal(np.log(90), 0.45)), 40, MAX_FRAMES))
    bodies = [subject_bones(seed, s) for s in subjects]
    _, speed_bias, amp_bias = bodies[0]
    speed = rng.uniform(0.7, 1.35) * speed_bias
    amp = rng.uniform(0.45, 1.2) * amp_bias
    t = np.arange(length) / FPS * speed
    u = np.linspace(0, 1, length)
    motions = _actor_motions(action, t, u, amp, rng, bodies[0][0])
    window = _activity_window(u, rng)
    # Scene: one actor faces the camera (yaw pi); two face each other side-on, 2 * half_gap apart along x.
    base_yaw = [np.pi] if len(motions) == 1 else [np.pi / 2, -np.pi / 2]
    half_gap = rng.uniform(0.45, 0.6)
    starts = [np.zeros(3)] if len(motions) == 1 else [np.array([-half_gap, 0, 0]), np.array([half_gap, 0, 0])]
    pitch, yaw_jitter = rng.uniform(-10, 10, 2) * np.pi / 180
    camera_rot = _rot("x", pitch) @ _rot("y", CAMERA_YAW_DEG[camera] * np.pi / 180 + yaw_jitter)
    out = []
    for motion, (bones, _, _), yaw0, start in zip(motions, bodies, base_yaw, starts):
        # fidgeting: slow sinusoidal sway on every joint angle, a different one per actor and sample
        sway = (rng.uniform(2, 12, (NUM_JOINTS, 3)) * np.pi / 180
                * np.sin(2 * np.pi * rng.uniform(0.1, 0.8, (NUM_JOINTS, 3)) * t[:, None, None]
                         + rng.uniform(0, 2 * np.pi, (NUM_JOINTS, 3))))
        yaw = yaw0 + motion.yaw + rng.normal(0, 25) * np.pi / 180
        root = start + (motion.pos * window[:, None]) @ _rot("y", np.array(yaw0)).T
        pos = forward_kinematics(bones, motion.angles * window[:, None, None] + sway, yaw, root)
        pos = pos @ camera_rot.T + np.array([0.0, 0.0, 3.0])
        fit_bias = rng.normal(0, 0.5, (NUM_JOINTS, 3))  # per-sample skeleton-fitting offset per joint
        out.append(pos + (fit_bias + rng.normal(0, 1, pos.shape)) * sensor_noise)
    return np.stack(out), length


def split_groups(num_subjects):
    """(train subjects, test subjects) of the xsub benchmark: every third subject is a test subject."""
    if num_subjects < 3:
        raise ValueError(f"synth needs at least 3 subjects to split by subject, got {num_subjects}")
    test = [s for s in range(num_subjects) if s % 3 == 2]
    return [s for s in range(num_subjects) if s % 3 != 2], test


def generate(seed=0, samples_per_class=200, num_subjects=20, sensor_noise=0.02):
    """All samples of every class: dict with x (N, 3, 300, 25, 2) float32, lengths, labels,
    subjects (actor 1's), partners (actor 2's subject, -1 when alone), cameras (0..2), names.
    Sample i = q * num_subjects + r of class c is performed by subject r in front of camera
    (r + q + c) % 3, so every subject meets every camera;
    a two-person partner comes from the same xsub group. sensor_noise: std (metres) of the per-frame
    jitter on every joint (plus a fixed per-sample offset per joint of half that); 0 leaves the exact
    forward kinematics, with the same motions."""
    groups = split_groups(num_subjects)
    n = len(CLASS_NAMES) * samples_per_class
    x = np.zeros((n, 3, MAX_FRAMES, NUM_JOINTS, NUM_BODIES), np.float32)
    lengths, labels, subjects, cameras = (np.zeros(n, np.int64) for _ in range(4))
    partners = np.full(n, -1, np.int64)
    names = []
    for label, action in enumerate(CLASS_NAMES):
        for i in range(samples_per_class):
            k = label * samples_per_class + i
            q, subject = divmod(i, num_subjects)
            camera = (subject + q + label) % 3
            actors = [subject]
            if action in TWO_PERSON:
                group = groups[1] if subject in groups[1] else groups[0]
                partners[k] = group[(group.index(subject) + 1) % len(group)]
                actors.append(partners[k])
            pos, length = _sample(seed, label, i, actors, camera, sensor_noise)
            pos -= pos[0, 0, 1]  # centre on spine middle of actor 1 in frame 0
            x[k, :, :length, :, :len(pos)] = pos.transpose(3, 1, 2, 0)
            lengths[k], labels[k], subjects[k], cameras[k] = length, label, subject, camera
            names.append(f"synth_C{camera + 1:03d}P{subject + 1:03d}A{label + 1:03d}I{i:05d}")
    return dict(x=x, lengths=lengths, labels=labels, subjects=subjects, partners=partners, cameras=cameras,
                names=names)


def split_indices(data, benchmark, num_subjects):
    """(train indices, test indices) of a generated set: xsub by subject, xview by camera (1 = test)."""
    if benchmark == "xsub":
        test = np.isin(data["subjects"], split_groups(num_subjects)[1])
    elif benchmark == "xview":
        test = data["cameras"] == 0
    else:
        raise ValueError(f"unknown synth benchmark {benchmark!r}; expected one of {BENCHMARKS}")
    return np.flatnonzero(~test), np.flatnonzero(test)


def dataset_name(benchmark):
    return "synth" if benchmark == "xsub" else f"synth-{benchmark}"


def prepare_synth(out_dir, seed=0, samples_per_class=200, num_subjects=20, benchmarks=BENCHMARKS,
                  npz=True, replace=True):
    """Generate once and write `{out_dir}/synth` (xsub) and/or `{out_dir}/synth-xview` in the fast
    layout (each dir written whole then renamed), plus `Synth_XSub.npz` / `Synth_XView.npz` in the
    MAMP format when npz. Returns {dataset name: {"train": n, "test": n, "path": dir}}."""
    unknown = set(benchmarks) - set(BENCHMARKS)
    if unknown:
        raise ValueError(f"unknown synth benchmarks {sorted(unknown)}; expected some of {BENCHMARKS}")
    out_dir = Path(out_dir)
    data = generate(seed, samples_per_class, num_subjects)
    summary = {}
    for benchmark in benchmarks:
        train, test = split_indices(data, benchmark, num_subjects)
        splits = {s: (data["x"][idx], data["lengths"][idx], data["labels"][idx], [data["names"][i] for i in idx])
                  for s, idx in (("train", train), ("test", test))}
        name = dataset_name(benchmark)
        path = layout.write_dataset(out_dir / name, name, CLASS_NAMES, NUM_JOINTS, NUM_BODIES, MAX_FRAMES,
                                    splits, replace=replace)
        summary[name] = {"train": len(train), "test": len(test), "path": str(path)}
        if npz:
            npz_path = out_dir / f"Synth_{'XSub' if benchmark == 'xsub' else 'XView'}.npz"
            layout.write_mamp_npz(npz_path, len(CLASS_NAMES), *[(sx, sy, sn) for sx, _, sy, sn in splits.values()])
            summary[name]["npz"] = str(npz_path)
    return summary
