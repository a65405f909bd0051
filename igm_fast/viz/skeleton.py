"""Animated GIF of one skeleton sequence, bones drawn, every present body: front and side views.

Source: `DATASET:INDEX` or `DATASET:SPLIT:INDEX` (a prepared dataset; split defaults to test), a
raw file (NTU `.skeleton`, denoised and centred as `prepare` does; NW-UCLA `.json`), or a `.npy`
holding one sample (3, T, V, M) or (T, V, 3). 25-joint (NTU/PKU/synth) and 20-joint (NW-UCLA)
layouts come from igm_fast.data.skeletons.
"""
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter

from igm_fast.data.layout import from_mamp_rows, valid_lengths
from igm_fast.data.skeletons import skeleton_for
from igm_fast.io import InputError, atomic_path

MAX_GIF_FRAMES = 60  # longer sequences are shown with a frame stride, keeping GIFs small
BODY_COLOURS = ("tab:blue", "tab:red")


def load_sample(source, data_root=None):
    """(x (3, T, V, M) valid frames only, title) of a `DATASET[:SPLIT]:INDEX` or a file."""
    path = Path(source)
    if path.suffix == ".skeleton":
        from igm_fast.data import ntu

        return from_mamp_rows(ntu.preprocess(path)[None], 25, 2)[0], path.stem
    if path.suffix == ".json":
        from igm_fast.data import ucla

        joints, label = ucla.read_sample(path)
        return np.ascontiguousarray(joints.transpose(2, 0, 1)[..., None]), f"{path.stem} ({ucla.CLASS_NAMES[label]})"
    if path.suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: unreadable .npy ({e})") from None
        if x.ndim == 3 and x.shape[2] == 3:
            x = x.transpose(2, 0, 1)[..., None]
        if x.ndim != 4 or x.shape[0] != 3:
            raise InputError(f"{path}: expected one sample (3, T, V, M) or (T, V, 3), found {x.shape}")
        return x[:, :max(1, int(valid_lengths(x[None])[0]))], path.stem
    parts = str(source).rsplit(":", 2)
    if len(parts) < 2 or not parts[-1].isdigit():
        raise InputError(f"{source}: expected DATASET:INDEX, DATASET:SPLIT:INDEX, or a .skeleton, .json or .npy file")
    from igm_fast.data.dataset import load_split

    name, split, index = (parts[0], "test", int(parts[1])) if len(parts) == 2 else (parts[0], parts[1], int(parts[2]))
    data = load_split(name, split, data_root)
    if not 0 <= index < len(data):
        raise InputError(f"{source}: index {index} outside the {len(data)} samples of {name} {split}")
    x = np.asarray(data.x[index, :, :data.lengths[index]])
    label = data.meta["class_names"][data.labels[index]]
    return x, f"{data.names[index]} ({label})"


def present_bodies(x):
    return [m for m in range(x.shape[3]) if np.abs(x[..., m]).sum() > 0]


def animate_skeleton(x, out, title=""):
    """Write a GIF of x (3, T, V, M): left panel x-y (front), right panel z-y (side)."""
    skeleton = skeleton_for(x.shape[2])
    bodies = present_bodies(x)
    frames = list(range(0, x.shape[1], max(1, -(-x.shape[1] // MAX_GIF_FRAMES))))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.5))
    lines = []
    for ax, (h, label) in zip(axes, ((0, "x (front view)"), (2, "z (side view)"))):
        pts = x[:, :, :, bodies]
        pad = 0.1
        ax.set(xlim=(pts[h].min() - pad, pts[h].max() + pad), ylim=(pts[1].min() - pad, pts[1].max() + pad),
               xlabel=label, ylabel="y", aspect="equal")
        for m in bodies:
            colour = BODY_COLOURS[m % len(BODY_COLOURS)]
            bones = [ax.plot([], [], color=colour, lw=2)[0] for _ in skeleton.bones]
            joints = ax.plot([], [], "o", color=colour, ms=3)[0]
            lines.append((h, m, bones, joints))
    caption = fig.suptitle(title)

    def draw(t):
        for h, m, bones, joints in lines:
            for line, (v, p) in zip(bones, skeleton.bones):
                line.set_data([x[h, t, v, m], x[h, t, p, m]], [x[1, t, v, m], x[1, t, p, m]])
            joints.set_data(x[h, t, :, m], x[1, t, :, m])
        caption.set_text(f"{title}  frame {t + 1}/{x.shape[1]}")
        return [caption] + [a for _, _, bones, joints in lines for a in (*bones, joints)]

    out = Path(out)
    with atomic_path(out) as tmp:
        gif = tmp.with_name(tmp.name + ".gif")  # Pillow picks the format from the file extension
        FuncAnimation(fig, draw, frames=frames).save(gif, writer=PillowWriter(fps=15))
        os.replace(gif, tmp)
    plt.close(fig)
    return out
