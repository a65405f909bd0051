"""Builders of hand-made NTU `.skeleton` files for tests: poses whose every value is exact in float32."""
import numpy as np

NUM_JOINTS = 25


def standing_pose(x=0.0, z=3.0):
    """(25, 3) float32: a person 1.2 m tall and 4 cm wide centred at x, depth z (spread test passes)."""
    j = np.arange(NUM_JOINTS)
    return np.stack([x + 0.01 * (j % 5), 0.05 * j - 0.6, z + 0.001 * j], axis=1).astype(np.float32)


def lying_pose(x=0.0, z=3.0):
    """(25, 3) float32: a pose wider than tall, a noisy frame for the spread test (x-range > 0.8 y-range)."""
    pose = standing_pose(0.0, z)
    return np.stack([x + pose[:, 1], pose[:, 0], pose[:, 2]], axis=1)


def joint_line(xyz, joint, frame):
    """One joint line: x y z depthX depthY colorX colorY orientation(4) trackingState. Colours are
    (100*frame + joint, 1000 + joint) so a test can see which frame a colour row came from."""
    x, y, z = (repr(float(v)) for v in xyz)
    return f"{x} {y} {z} 250.5 180.25 {100 * frame + joint} {1000 + joint} 0.5 0.1 -0.2 0.3 2"


def skeleton_text(frames, newline="\n"):
    """frames: one list per frame of (body_id, joints (25, 3)). Returns the `.skeleton` file text."""
    lines = [str(len(frames))]
    for frame, bodies in enumerate(frames):
        lines.append(str(len(bodies)))
        for body_id, joints in bodies:
            lines.append(f"{body_id} 0 1 1 1 1 0 0.01 -0.02 2")
            lines.append(str(NUM_JOINTS))
            lines.extend(joint_line(joints[j], j, frame) for j in range(NUM_JOINTS))
    return newline.join(lines) + newline


def write_skeleton(path, frames, newline="\n"):
    with open(path, "w", newline="") as f:  # newline="": write the line endings exactly as given
        f.write(skeleton_text(frames, newline))
    return path


def frames_from_tracks(num_frames, tracks):
    """tracks: {body_id: (first_frame, poses (F, 25, 3))} -> frames for `skeleton_text`; a body is in
    frames first_frame .. first_frame + F - 1. Frames where no track is present have no body."""
    frames = [[] for _ in range(num_frames)]
    for body_id, (first, poses) in tracks.items():
        for k, pose in enumerate(poses):
            frames[first + k].append((body_id, pose))
    return frames
