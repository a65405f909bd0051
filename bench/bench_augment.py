"""Augmentation throughput: the batched extension op vs MAMP's per-sample pipeline.

Baseline = what MAMP's Feeder runs per sample in DataLoader workers (2 here): count valid
frames, numpy crop + F.interpolate resize (tools.valid_crop_resize), rotation (tools.random_rot),
then default collation. Ours = one sample_params + apply call per batch, and SkeletonLoader
end to end (memory-mapped gather + the op). NTU shapes: batch 256, T=300 -> 120, V=25, M=2.
Run: .venv/bin/python -m pytest bench/bench_augment.py -s
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from bench.common import report, require_cuda, time_ms
from igm_fast import augment
from igm_fast.data import layout
from igm_fast.data.loader import SkeletonLoader

BATCH, FRAMES, OUT_FRAMES, JOINTS, BODIES = 256, 300, 120, 25, 2
SAMPLES = 4 * BATCH
WORKERS = 2


def ntu_like(n, seed=0):
    """Padded sequences with NTU-like valid lengths (30..300 frames) and zero padding."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(30, FRAMES + 1, n)
    x = rng.standard_normal((n, 3, FRAMES, JOINTS, BODIES)).astype(np.float32)
    for i, length in enumerate(lengths):
        x[i, :, length:] = 0
    return x, lengths


# ---- MAMP's per-sample pipeline (feeder_ntu.Feeder.__getitem__ + feeders/tools.py) -------------

def mamp_valid_crop_resize(data, valid_frame_num, p_interval, window):
    c, t, v, m = data.shape
    if len(p_interval) == 1:
        bias = int((1 - p_interval[0]) * valid_frame_num / 2)
        data = data[:, bias:valid_frame_num - bias]
    else:
        p = np.random.rand() * (p_interval[1] - p_interval[0]) + p_interval[0]  # MAMP: rand(1), old numpy
        cropped_length = np.minimum(np.maximum(int(np.floor(valid_frame_num * p)), 64), valid_frame_num)
        bias = np.random.randint(0, valid_frame_num - cropped_length + 1)
        data = data[:, bias:bias + cropped_length]
    length = data.shape[1]
    data = torch.tensor(data, dtype=torch.float).permute(0, 2, 3, 1).contiguous().view(c * v * m, length)
    data = F.interpolate(data[None, None], size=(c * v * m, window), mode="bilinear", align_corners=False).squeeze()
    return data.contiguous().view(c, v, m, window).permute(0, 3, 1, 2).contiguous().numpy()


def mamp_rot(rot):
    """MAMP's _rot: per-frame angles (T, 3) -> (T, 3, 3) matrices Rz @ Ry @ Rx."""
    cos_r, sin_r = rot.cos(), rot.sin()
    zeros, ones = torch.zeros(rot.shape[0], 1), torch.ones(rot.shape[0], 1)
    r1 = torch.stack((ones, zeros, zeros), dim=-1)
    rx2 = torch.stack((zeros, cos_r[:, 0:1], sin_r[:, 0:1]), dim=-1)
    rx3 = torch.stack((zeros, -sin_r[:, 0:1], cos_r[:, 0:1]), dim=-1)
    rx = torch.cat((r1, rx2, rx3), dim=1)
    ry1 = torch.stack((cos_r[:, 1:2], zeros, -sin_r[:, 1:2]), dim=-1)
    r2 = torch.stack((zeros, ones, zeros), dim=-1)
    ry3 = torch.stack((sin_r[:, 1:2], zeros, cos_r[:, 1:2]), dim=-1)
    ry = torch.cat((ry1, r2, ry3), dim=1)
    rz1 = torch.stack((cos_r[:, 2:3], sin_r[:, 2:3], zeros), dim=-1)
    r3 = torch.stack((zeros, zeros, ones), dim=-1)
    rz2 = torch.stack((-sin_r[:, 2:3], cos_r[:, 2:3], zeros), dim=-1)
    rz = torch.cat((rz1, rz2, r3), dim=1)
    return rz.matmul(ry).matmul(rx)


def mamp_random_rot(data, theta=0.3):
    data = torch.from_numpy(data)
    c, t, v, m = data.shape
    data = data.permute(1, 0, 2, 3).contiguous().view(t, c, v * m)
    rot = torch.zeros(3).uniform_(-theta, theta)
    rot = mamp_rot(torch.stack([rot] * t, dim=0))
    return torch.matmul(rot, data).view(t, c, v, m).permute(1, 0, 2, 3).contiguous()


class MampFeeder(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        data = self.x[index]
        valid_frame_num = np.sum(data.sum(0).sum(-1).sum(-1) != 0)
        data = mamp_valid_crop_resize(data, valid_frame_num, (0.5, 1.0), OUT_FRAMES)
        return mamp_random_rot(data), index


# ---- benchmarks ---------------------------------------------------------------------------------

def per_sample_pipeline_ms(x):
    """Milliseconds per batch of MAMP's pipeline: persistent workers, one pass over `x` per call."""
    loader = DataLoader(MampFeeder(x), batch_size=BATCH, shuffle=True, num_workers=WORKERS, drop_last=True,
                        persistent_workers=True)

    def one_pass():
        for _ in loader:
            pass

    ms, q20, q80 = time_ms(one_pass, warmup=5, rep=15)
    batches = len(loader)
    return ms / batches, q20 / batches, q80 / batches


@pytest.fixture(scope="module")
def data():
    return ntu_like(SAMPLES)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, data):
    x, lengths = data
    root = tmp_path_factory.mktemp("bench_split")
    layout.write_split(root, "train", x, lengths, np.zeros(len(x), np.int64), [str(i) for i in range(len(x))])
    layout.write_meta(root, "bench", 1, JOINTS, BODIES, FRAMES, ["c"])
    return layout.open_split(root, "train")


def row(ms, q20, q80):
    return {"ms": ms, "q20_ms": q20, "q80_ms": q80, "samples_per_s": BATCH / ms * 1e3}


def test_bench_augment_cpu(data, prepared):
    x, lengths = data
    batch = torch.from_numpy(x[:BATCH])
    valid = torch.from_numpy(lengths[:BATCH])
    torch.testing.assert_close(valid, torch.from_numpy(layout.valid_lengths(x[:BATCH])))  # MAMP's count

    def op():
        params = augment.sample_params(valid, train=True, seed=0, epoch=1, indices=torch.arange(BATCH))
        augment.apply(batch, params, OUT_FRAMES)

    loader = SkeletonLoader(prepared, BATCH, train=True, device="cpu", data_on_device="off")

    def loader_pass():
        for _ in loader:
            pass

    ms, q20, q80 = time_ms(loader_pass, warmup=5, rep=15)
    rows = {
        "mamp_per_sample": row(*per_sample_pipeline_ms(x)),
        "ext_op": row(*time_ms(op)),
        "skeleton_loader": row(ms / len(loader), q20 / len(loader), q80 / len(loader)),
    }
    report("augment", f"B={BATCH} T={FRAMES}->{OUT_FRAMES} V={JOINTS} M={BODIES}", rows, baseline="mamp_per_sample")


def test_bench_augment_cuda(data, prepared):
    require_cuda()
    x, lengths = data
    big = 16 * BATCH  # large batch for the bandwidth figure
    reps = big // len(x)
    batch = torch.from_numpy(np.concatenate([x] * reps)).cuda()
    valid = torch.from_numpy(np.concatenate([lengths] * reps)).cuda()
    params = augment.sample_params(valid, train=True, seed=0, epoch=1)
    kernel_ms, q20, q80 = time_ms(lambda: augment.apply(batch, params, OUT_FRAMES, check=False))
    # Bytes that must move: the output, plus the cropped input windows (interpolation reads them).
    moved = 4 * 3 * JOINTS * BODIES * (big * OUT_FRAMES + int(params.length.sum()))
    loader = SkeletonLoader(prepared, BATCH, train=True, device="cuda", data_on_device="on")

    def loader_pass():
        for _ in loader:
            pass

    ms, lq20, lq80 = time_ms(loader_pass)
    per_sample = row(*per_sample_pipeline_ms(x))
    rows = {
        "mamp_per_sample": per_sample,
        "ext_kernel": {"ms": kernel_ms * BATCH / big, "q20_ms": q20 * BATCH / big, "q80_ms": q80 * BATCH / big,
                       "samples_per_s": big / kernel_ms * 1e3, "GB_per_s": moved / kernel_ms / 1e6},
        "skeleton_loader_resident": row(ms / len(loader), lq20 / len(loader), lq80 / len(loader)),
    }
    report("augment_cuda", f"B={big} (ms per {BATCH}) T={FRAMES}->{OUT_FRAMES} V={JOINTS} M={BODIES}", rows,
           baseline="mamp_per_sample")
