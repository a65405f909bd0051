"""Joint layouts of the two skeletons igm_fast knows: the one place for joint names and bones.

Bones follow the CTR-GCN bone-stream convention: every joint v has a parent, and the bone of v
is `joint[v] - joint[parent[v]]`; the root's parent is itself, so its bone is zero. The viz draws
the same (v, parent[v]) segments, skipping the root's self-loop.
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Skeleton:
    name: str
    joint_names: tuple
    parents: tuple  # 0-based parent of every joint; the root is its own parent

    @property
    def num_joints(self):
        return len(self.joint_names)

    @property
    def bones(self):
        """(child, parent) 0-based pairs, root self-loop excluded: the segments to draw."""
        return tuple((v, p) for v, p in enumerate(self.parents) if v != p)


def _from_one_based(name, joint_names, pairs):
    parents = [None] * len(joint_names)
    for child, parent in pairs:
        parents[child - 1] = parent - 1
    assert None not in parents, f"{name}: a joint lacks a parent"
    return Skeleton(name, tuple(joint_names), tuple(parents))


# NTU RGB+D Kinect v2 (also PKU-MMD and synth); root = joint 21 (spine at the shoulders).
NTU25 = _from_one_based("ntu25", (
    "spine_base", "spine_mid", "neck", "head", "shoulder_l", "elbow_l", "wrist_l", "hand_l",
    "shoulder_r", "elbow_r", "wrist_r", "hand_r", "hip_l", "knee_l", "ankle_l", "foot_l",
    "hip_r", "knee_r", "ankle_r", "foot_r", "spine_shoulder", "hand_tip_l", "thumb_l",
    "hand_tip_r", "thumb_r",
), ((1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (21, 21), (22, 23), (23, 8), (24, 25), (25, 12)))

# NW-UCLA Kinect v1; root = joint 3 (shoulder centre).
UCLA20 = _from_one_based("ucla20", (
    "hip_center", "spine", "shoulder_center", "head", "shoulder_l", "elbow_l", "wrist_l", "hand_l",
    "shoulder_r", "elbow_r", "wrist_r", "hand_r", "hip_l", "knee_l", "ankle_l", "foot_l",
    "hip_r", "knee_r", "ankle_r", "foot_r",
), ((1, 2), (2, 3), (3, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
    (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19)))

SKELETONS = {s.num_joints: s for s in (NTU25, UCLA20)}


def skeleton_for(num_joints):
    if num_joints not in SKELETONS:
        raise ValueError(f"no skeleton layout with {num_joints} joints; known: {sorted(SKELETONS)}")
    return SKELETONS[num_joints]


STREAMS = ("joint", "bone", "motion")


def to_stream(x, stream):
    """Derive an input stream from joint coordinates x (N, 3, T, V, M).

    bone: joint minus its parent (CTR-GCN pairs). motion: frame t+1 minus frame t, last frame zero.
    Computed on the batch after augmentation, so both see the same crop and rotation as the joints.
    """
    if stream == "joint":
        return x
    if stream == "bone":
        parents = torch.tensor(skeleton_for(x.shape[3]).parents, device=x.device)
        return x - x[:, :, :, parents]
    if stream == "motion":
        motion = torch.zeros_like(x)
        motion[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
        return motion
    raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
