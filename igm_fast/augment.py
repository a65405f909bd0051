"""Batched skeleton augmentation on the device where the batch lives (C++/CUDA extension).

MAMP's pipeline, one op call per batch instead of numpy per sample in DataLoader workers:
valid-frame crop (train: ratio p ~ U(p_min, p_max), length min(max(floor(L*p), min_crop), L)
with min_crop 64 as MAMP by default,
random start; eval: centre crop with ratio 0.95), linear resize to `out_frames` exactly as
F.interpolate(mode='linear', align_corners=False), rotation R = Rz @ Ry @ Rx with angles
U(-theta, theta) (train only). Optional extras, off by default and train only: `shear`
(off-diagonal shear U(-shear, shear), applied before the rotation), `noise_sigma` (Gaussian
noise on every output coordinate), `joint_mask_p` (each joint zeroed in every frame and body
with this probability). Two layers:

    params = sample_params(valid_len, train=True, seed=0, epoch=e, indices=idx)
    x_aug = apply(x, params, out_frames=120)

`sample_params` draws from Philox keyed by (seed, epoch, sample index), so a sample gets the
same augmentation on CPU and GPU, in any batch, rank or order. `AugParams` can also be built
by hand. The math is in csrc/augment_math.h.
"""
from dataclasses import dataclass
from typing import Optional

import torch

try:
    import igm_fast._C  # noqa: F401  (loads the library that registers torch.ops.igm_fast.*)
except ImportError as e:
    raise ImportError(f"igm_fast's C++ extension is not built or does not load ({e}); build it with "
                      "`pip install --no-build-isolation -e .` (or `./igm env`)") from e

TRAIN_P_INTERVAL = (0.5, 1.0)
EVAL_P_INTERVAL = (0.95,)  # MAMP: a single ratio means a centre crop
MIN_CROP = 64  # MAMP's shortest random crop, in frames


@dataclass
class AugParams:
    """Per-sample augmentation parameters, all on one device; extras are None when off."""

    start: torch.Tensor  # int64 (N,): first cropped frame
    length: torch.Tensor  # int64 (N,): cropped frames
    angles: torch.Tensor  # float32 (N, 3): rotation about x, y, z in radians
    shear: Optional[torch.Tensor] = None  # float32 (N, 6): S = [[1, s0, s1], [s2, 1, s3], [s4, s5, 1]]
    joint_mask: Optional[torch.Tensor] = None  # bool (N, V): joints set to zero
    noise_key: Optional[torch.Tensor] = None  # int64 (N,): key of each sample's Gaussian noise stream
    noise_sigma: float = 0.0

    def __len__(self):
        return self.start.shape[0]

    def to(self, device):
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return AugParams(move(self.start), move(self.length), move(self.angles), move(self.shear),
                         move(self.joint_mask), move(self.noise_key), self.noise_sigma)


def sample_params(valid_len, *, train, p_interval=None, theta=0.3, seed=0, epoch=0, indices=None,
                  shear=0.0, noise_sigma=0.0, joint_mask_p=0.0, num_joints=None, min_crop=MIN_CROP):
    """Crop windows and angles for samples with `valid_len` valid frames (int64 (N,) tensor).

    p_interval: (p_min, p_max) draws a random crop ratio; a single ratio (p,) a centre crop.
    Default: (0.5, 1.0) when `train`, (0.95,) otherwise. Rotation only when `train`.
    min_crop: a random crop keeps at least this many frames (the whole sequence when shorter);
    MAMP's 64 suits NTU (T ~ 100); short sequences (NW-UCLA: median 31) need a smaller one.
    indices: global sample indices (int64 (N,), default arange(N)); with seed and epoch they
    key the random stream, so a sample's parameters never depend on the batch it is in.
    shear, noise_sigma, joint_mask_p: the optional extras (0 = off; ignored unless `train`);
    joint masking needs `num_joints` (V). Runs on valid_len's device.
    """
    valid_len = torch.as_tensor(valid_len)
    if valid_len.dim() != 1:
        raise ValueError(f"sample_params: valid_len must be 1-D (N,), got shape {tuple(valid_len.shape)}")
    if valid_len.dtype.is_floating_point or valid_len.dtype == torch.bool:
        raise ValueError(f"sample_params: valid_len must hold integers, got {valid_len.dtype}")
    valid_len = valid_len.long()
    indices = (torch.arange(len(valid_len), device=valid_len.device) if indices is None
               else torch.as_tensor(indices).to(valid_len.device, torch.int64))
    if indices.shape != valid_len.shape:
        raise ValueError(f"sample_params: indices shape {tuple(indices.shape)} != valid_len shape "
                         f"{tuple(valid_len.shape)}")
    p_interval = tuple(p_interval) if p_interval is not None else (TRAIN_P_INTERVAL if train else EVAL_P_INTERVAL)
    if len(p_interval) not in (1, 2):
        raise ValueError(f"sample_params: p_interval must be (p_min, p_max) or (p,), got {p_interval}")
    if not train:
        shear = noise_sigma = joint_mask_p = 0.0
    if joint_mask_p and num_joints is None:
        raise ValueError("sample_params: joint_mask_p > 0 needs num_joints (the V of the batch)")
    if noise_sigma < 0:
        raise ValueError(f"sample_params: noise_sigma must be >= 0, got {noise_sigma}")
    start, length, angles, shear_coef, joint_mask, noise_key = torch.ops.igm_fast.augment_sample_params(
        valid_len, indices, int(seed), int(epoch), len(p_interval) == 1, float(p_interval[0]),
        float(p_interval[-1]), float(theta) if train else 0.0, float(shear), float(joint_mask_p),
        int(num_joints) if joint_mask_p else 0, int(min_crop))
    return AugParams(start, length, angles, shear=shear_coef if shear else None,
                     joint_mask=joint_mask if joint_mask_p else None,
                     noise_key=noise_key if noise_sigma else None, noise_sigma=float(noise_sigma))


def _check_apply_args(x, params, out_frames):
    if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(f"augment.apply: x must be a (N, 3, T, V, M) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"augment.apply: x must be float32, bfloat16 or float16, got {x.dtype}")
    if x.requires_grad:
        raise ValueError("augment.apply: x requires grad, but augmentation has no backward; it is meant for "
                         "input batches: pass x.detach() if the graph is not needed")
    if len(params) != x.shape[0]:
        raise ValueError(f"augment.apply: {len(params)} samples of parameters for a batch of {x.shape[0]}")
    if int(out_frames) < 1:
        raise ValueError(f"augment.apply: out_frames must be >= 1, got {out_frames}")


def _check_crop_windows(params, frames):
    bad = (params.length < 1) | (params.length > frames) | (params.start < 0) | (params.start + params.length > frames)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"augment.apply: sample {i} has crop start={int(params.start[i])} "
                         f"length={int(params.length[i])}; need length in [1, T={frames}] and "
                         f"0 <= start, start + length <= T")


def apply(x, params, out_frames=120, *, check=True):
    """Crop, resize to `out_frames` and rotate every sample of x (N, 3, T, V, M) by `params`.

    x: float32 / bfloat16 / float16 on CPU or CUDA (computed in float32, returned in x's dtype).
    check: validate the crop windows against T (on CUDA this reads them back: one sync; the
    CPU op always validates, the CUDA kernel clamps windows so it never reads out of bounds).
    """
    _check_apply_args(x, params, out_frames)
    params = params.to(x.device)
    if check and not torch.compiler.is_compiling():
        _check_crop_windows(params, x.shape[2])
    return torch.ops.igm_fast.augment_apply(x, params.start, params.length, params.angles, params.shear,
                                            params.joint_mask, params.noise_key, float(params.noise_sigma),
                                            int(out_frames))


def augment(x, valid_len, *, train, out_frames=120, seed=0, epoch=0, indices=None, p_interval=None, theta=0.3,
            shear=0.0, noise_sigma=0.0, joint_mask_p=0.0, min_crop=MIN_CROP):
    """sample_params on x's device, then apply: the whole augmentation of one batch."""
    params = sample_params(torch.as_tensor(valid_len).to(x.device), train=train, p_interval=p_interval,
                           theta=theta, seed=seed, epoch=epoch, indices=indices, shear=shear,
                           noise_sigma=noise_sigma, joint_mask_p=joint_mask_p, num_joints=x.shape[3],
                           min_crop=min_crop)
    return apply(x, params, out_frames)


@torch.library.register_fake("igm_fast::augment_sample_params")
def _(valid_len, indices, seed, epoch, center, p_min, p_max, theta, shear, joint_mask_p, num_joints, min_crop=MIN_CROP):
    n = valid_len.shape[0]
    return (valid_len.new_empty(n), valid_len.new_empty(n), valid_len.new_empty((n, 3), dtype=torch.float32),
            valid_len.new_empty((n, 6), dtype=torch.float32), valid_len.new_empty((n, num_joints), dtype=torch.bool),
            valid_len.new_empty(n))


@torch.library.register_fake("igm_fast::augment_apply")
def _(x, start, length, angles, shear, joint_mask, noise_key, noise_sigma, out_frames):
    return x.new_empty((x.shape[0], 3, out_frames, x.shape[3], x.shape[4]))
