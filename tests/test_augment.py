"""igm_fast.augment against independent references: a float64 numpy crop/resize/rotation
written from MAMP's formulas, torch's F.interpolate, and a numpy Philox4x32-10."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from igm_fast import augment
from igm_fast.augment import AugParams

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


# ---- references -----------------------------------------------------------------------------

def reference_apply(x, start, length, angles, out_frames, shear=None, joint_mask=None, noise_key=None,
                    noise_sigma=0.0):
    """float64 crop + linear resize (PyTorch's float32 index arithmetic) + shear + rotation
    Rz @ Ry @ Rx + Gaussian noise (Box-Muller on Philox) + joint mask."""
    x = np.asarray(x, np.float64)
    out = np.empty(x.shape[:2] + (out_frames,) + x.shape[3:])
    for i in range(x.shape[0]):
        crop = x[i, :, start[i]:start[i] + length[i]]
        scale = np.float32(length[i]) / np.float32(out_frames)
        src = np.maximum(scale * (np.arange(out_frames, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5),
                         np.float32(0))
        i0 = np.minimum(np.floor(src).astype(np.int64), length[i] - 1)
        i1 = i0 + (i0 < length[i] - 1)
        w1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float64)[None, :, None, None]
        resized = (1 - w1) * crop[:, i0] + w1 * crop[:, i1]
        ax, ay, az = np.asarray(angles[i], np.float64)
        rx = np.array([[1, 0, 0], [0, np.cos(ax), np.sin(ax)], [0, -np.sin(ax), np.cos(ax)]])
        ry = np.array([[np.cos(ay), 0, -np.sin(ay)], [0, 1, 0], [np.sin(ay), 0, np.cos(ay)]])
        rz = np.array([[np.cos(az), np.sin(az), 0], [-np.sin(az), np.cos(az), 0], [0, 0, 1]])
        transform = rz @ ry @ rx
        if shear is not None:
            s0, s1, s2, s3, s4, s5 = np.asarray(shear[i], np.float64)
            transform = transform @ np.array([[1, s0, s1], [s2, 1, s3], [s4, s5, 1]])
        out[i] = np.einsum("ij,jtvm->itvm", transform, resized)
        if noise_key is not None:
            out[i] += noise_sigma * reference_noise(int(noise_key[i]), out.shape[2:])
        if joint_mask is not None:
            out[i][:, :, np.asarray(joint_mask[i], bool)] = 0
    return out


PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(ctr, key):
    """Vectorised Philox4x32-10 on uint64 arrays holding 32-bit words (Salmon et al. 2011)."""
    c = [np.asarray(w, np.uint64) & MASK32 for w in ctr]
    k0, k1 = (np.asarray(w, np.uint64) & MASK32 for w in key)
    for _ in range(10):
        p0, p1 = np.uint64(PHILOX_M[0]) * c[0], np.uint64(PHILOX_M[1]) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & MASK32, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & MASK32]
        k0, k1 = (k0 + np.uint64(PHILOX_W[0])) & MASK32, (k1 + np.uint64(PHILOX_W[1])) & MASK32
    return c


def reference_noise(key, shape):
    """(3, T, V, M) N(0, 1): point p = (t * V + v) * M + m -> Philox(counter p, key) -> Box-Muller."""
    key = np.uint64(key % 2**64)
    point = np.arange(int(np.prod(shape)), dtype=np.uint64)
    zero = np.zeros_like(point)
    w = philox4x32_10((point & MASK32, point >> np.uint64(32), zero, zero), (key & MASK32, key >> np.uint64(32)))
    u = lambda word: (word >> np.uint64(8)).astype(np.float64) * 2.0**-24  # noqa: E731
    radius0, radius1 = np.sqrt(-2 * np.log(u(w[0]) + 2.0**-24)), np.sqrt(-2 * np.log(u(w[2]) + 2.0**-24))
    angle0, angle1 = 2 * np.pi * u(w[1]), 2 * np.pi * u(w[3])
    g = np.stack([radius0 * np.cos(angle0), radius0 * np.sin(angle0), radius1 * np.cos(angle1)])
    return g.reshape(3, *shape)


def reference_sample_params(valid, seed, epoch, indices, p_interval, theta, min_crop=64):
    """The documented sampling: Philox at counter (index lo, index hi, epoch, block), key = seed."""
    valid, idx = np.asarray(valid, np.int64), np.asarray(indices, np.int64).astype(np.uint64)
    key = (np.uint64(seed % 2**64) & MASK32, np.uint64(seed % 2**64) >> np.uint64(32))
    blocks = [philox4x32_10((idx & MASK32, idx >> np.uint64(32), np.full_like(idx, epoch % 2**32), np.full_like(idx, b)),
                            key) for b in (0, 1)]
    u = lambda bits: bits.astype(np.float64) * 2.0**-32  # noqa: E731
    if len(p_interval) == 1:
        bias = np.array([int((1 - p_interval[0]) * v / 2) for v in valid], np.int64)
        start, length = bias, valid - 2 * bias
    else:
        p = u(blocks[0][0]) * (p_interval[1] - p_interval[0]) + p_interval[0]
        length = np.minimum(np.maximum(np.floor(valid * p).astype(np.int64), min_crop), valid)
        start = ((blocks[0][1] * (valid - length + 1).astype(np.uint64)) >> np.uint64(32)).astype(np.int64)
    bits = np.stack([blocks[0][2], blocks[0][3], blocks[1][0]], 1)
    angles = (u(bits) * (2 * theta) + -theta).astype(np.float32)
    return start, length, angles


def reference_extras(seed, epoch, indices, shear, joint_mask_p, joints):
    """Shear from words 1-3 of block 1 and 0-2 of block 2, noise key from block 2 word 3 (low)
    and block 3 word 0 (high), joint v's mask from block 4 + v // 4, word v % 4."""
    idx = np.asarray(indices, np.int64).astype(np.uint64)
    key = (np.uint64(seed % 2**64) & MASK32, np.uint64(seed % 2**64) >> np.uint64(32))

    def block(b):
        return philox4x32_10((idx & MASK32, idx >> np.uint64(32), np.full_like(idx, epoch), np.full_like(idx, b)), key)

    b1, b2, b3 = block(1), block(2), block(3)
    bits = np.stack([b1[1], b1[2], b1[3], b2[0], b2[1], b2[2]], 1)
    shear_coef = (bits.astype(np.float64) * 2.0**-32 * (2 * shear) + -shear).astype(np.float32)
    noise_key = (b2[3] | (b3[0] << np.uint64(32))).view(np.int64)
    mask = np.stack([block(4 + v // 4)[v % 4].astype(np.float64) * 2.0**-32 < joint_mask_p for v in range(joints)], 1)
    return shear_coef, mask, noise_key


def random_batch(n, frames, joints=25, bodies=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, frames, joints, bodies, generator=g).to(dtype)


# ---- apply ----------------------------------------------------------------------------------

# (T, crop start, crop length, out_frames): L < 64, L = 1, L = T, upsampling and downsampling.
WINDOWS = [(300, 0, 300, 120), (300, 17, 150, 120), (80, 3, 30, 120), (50, 49, 1, 120),
           (64, 0, 64, 64), (120, 5, 77, 13), (7, 2, 5, 1)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("frames,start,length,out_frames", WINDOWS)
def test_apply_matches_float64_reference(device, frames, start, length, out_frames):
    n = 3
    x = random_batch(n, frames, joints=5, bodies=2)
    g = torch.Generator().manual_seed(frames + length)
    angles = (torch.rand(n, 3, generator=g) * 0.6 - 0.3)
    starts = torch.tensor([start, 0, frames - length])
    lengths = torch.full((n,), length)
    params = AugParams(starts, lengths, angles)
    got = augment.apply(x.to(device), params, out_frames).cpu()
    want = reference_apply(x.numpy(), starts.numpy(), lengths.numpy(), angles.numpy(), out_frames)
    assert got.shape == (n, 3, out_frames, 5, 2) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), torch.from_numpy(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("frames,start,length,out_frames", WINDOWS)
def test_apply_without_rotation_equals_mamp_interpolate(device, frames, start, length, out_frames):
    """MAMP's resize: view the crop as (C*V*M, len) and F.interpolate bilinear, align_corners=False."""
    x = random_batch(1, frames, joints=4, bodies=2, seed=1)
    params = AugParams(torch.tensor([start]), torch.tensor([length]), torch.zeros(1, 3))
    got = augment.apply(x.to(device), params, out_frames).cpu()[0]
    crop = x[0, :, start:start + length].permute(0, 2, 3, 1).reshape(1, 1, 3 * 4 * 2, length)
    want = F.interpolate(crop, size=(3 * 4 * 2, out_frames), mode="bilinear", align_corners=False)
    want = want.reshape(3, 4, 2, out_frames).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    linear = F.interpolate(x[0, :, start:start + length].permute(0, 2, 3, 1).reshape(1, 24, length),
                           size=out_frames, mode="linear", align_corners=False)
    torch.testing.assert_close(got, linear.reshape(3, 4, 2, out_frames).permute(0, 3, 1, 2), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_apply_low_precision_computes_in_float32(device, dtype):
    x = random_batch(4, 90, joints=6, bodies=2, seed=2, dtype=dtype)
    params = augment.sample_params(torch.tensor([90, 64, 1, 40]), train=True, seed=3)
    got = augment.apply(x.to(device), params, 120).cpu()
    assert got.dtype == dtype
    want = reference_apply(x.float().numpy(), params.start.numpy(), params.length.numpy(), params.angles.numpy(), 120)
    # The only loss is rounding the float32 result to the output dtype.
    torch.testing.assert_close(got.double(), torch.from_numpy(want), rtol=2 ** -7, atol=1e-2)


def test_apply_accepts_non_contiguous_input():
    base = random_batch(2, 60, joints=5, bodies=2, seed=4)
    x = base.transpose(3, 4).contiguous().transpose(3, 4)  # same values, other strides
    assert not x.is_contiguous()
    params = augment.sample_params(torch.tensor([60, 33]), train=True, seed=5)
    torch.testing.assert_close(augment.apply(x, params, 40), augment.apply(base, params, 40), rtol=0, atol=0)


def test_apply_zero_padding_frames_are_never_read():
    """Frames beyond the crop window must not leak into the output."""
    x = random_batch(1, 100, joints=3, bodies=1, seed=6)
    params = AugParams(torch.tensor([10]), torch.tensor([40]), torch.tensor([[0.1, -0.2, 0.3]]))
    poisoned = x.clone()
    poisoned[:, :, :10] = float("nan")
    poisoned[:, :, 50:] = float("nan")
    torch.testing.assert_close(augment.apply(poisoned, params, 120), augment.apply(x, params, 120), rtol=0, atol=0)


def test_augment_convenience_equals_two_steps():
    x = random_batch(5, 70, joints=4, bodies=2, seed=7)
    valid = torch.tensor([70, 10, 64, 1, 65])
    idx = torch.tensor([10, 11, 12, 13, 14])
    params = augment.sample_params(valid, train=True, seed=1, epoch=2, indices=idx)
    torch.testing.assert_close(augment.augment(x, valid, train=True, out_frames=50, seed=1, epoch=2, indices=idx),
                               augment.apply(x, params, 50), rtol=0, atol=0)


# ---- sample_params ----------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed,epoch,min_crop", [(0, 0, 64), (12345, 7, 64), (2**40 + 3, 2**31 + 5, 64), (-1, 1, 64),
                                                (5, 2, 8), (9, 3, 1)])
def test_sample_params_train_matches_numpy_philox(device, seed, epoch, min_crop):
    rng = np.random.default_rng(0)
    valid = np.concatenate([[1, 2, 63, 64, 65, 127, 128, 300], rng.integers(1, 301, 500)])
    indices = np.concatenate([rng.integers(0, 2**40, len(valid) - 3), [0, 2**32 - 1, 2**32]])
    got = augment.sample_params(torch.tensor(valid, device=device), train=True, theta=0.3, seed=seed, epoch=epoch,
                                indices=torch.tensor(indices), min_crop=min_crop)
    start, length, angles = reference_sample_params(valid, seed, epoch, indices, (0.5, 1.0), 0.3, min_crop)
    if min_crop < 64:  # a smaller floor really crops short sequences
        assert (length[valid <= 64] < valid[valid <= 64]).any()
    np.testing.assert_array_equal(got.length.cpu().numpy(), length)
    np.testing.assert_array_equal(got.start.cpu().numpy(), start)
    np.testing.assert_array_equal(got.angles.cpu().numpy(), angles)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("p", [0.95, 0.5, 1.0])
def test_sample_params_eval_is_mamp_centre_crop_without_rotation(device, p):
    valid = np.arange(1, 301)
    got = augment.sample_params(torch.tensor(valid, device=device), train=False, p_interval=(p,), seed=3)
    bias = np.array([int((1 - p) * v / 2) for v in valid])  # MAMP's tools.valid_crop_resize
    np.testing.assert_array_equal(got.start.cpu().numpy(), bias)
    np.testing.assert_array_equal(got.length.cpu().numpy(), valid - 2 * bias)
    assert not got.angles.any()


def test_sample_params_eval_default_is_centre_crop_095():
    got = augment.sample_params(torch.tensor([300, 100]), train=False)
    assert got.start.tolist() == [7, 2] and got.length.tolist() == [286, 96]


def test_sample_params_distribution():
    n, theta = 20000, 0.3
    valid = torch.full((n,), 200)
    got = augment.sample_params(valid, train=True, theta=theta, seed=11)
    length, start, angles = got.length.numpy(), got.start.numpy(), got.angles.numpy()
    # length = floor(200 p) with p ~ U(0.5, 1): uniform over 100..199 (200 only when p = 1 exactly).
    assert length.min() == 100 and length.max() == 199
    counts = np.bincount(length - 100, minlength=100)
    assert counts.min() > 0.7 * n / 100 and counts.max() < 1.3 * n / 100
    # start uniform on [0, 200 - length]: its position relative to the slack is U(0, 1).
    rel = (start + 0.5) / (200 - length + 1)
    assert (start >= 0).all() and (start + length <= 200).all()
    assert abs(rel.mean() - 0.5) < 0.01 and abs(rel.var() - 1 / 12) < 0.01
    assert (np.abs(angles) <= theta).all() and (np.abs(angles).max(0) > 0.99 * theta).all()
    assert np.abs(angles.mean(0)).max() < 0.01 and np.allclose(angles.var(0), (2 * theta) ** 2 / 12, rtol=0.05)
    assert abs(np.corrcoef(angles[:, 0], angles[:, 1])[0, 1]) < 0.03


def test_sample_params_short_sequences_keep_whole_valid_range():
    valid = torch.tensor([1, 10, 63, 64])
    got = augment.sample_params(valid, train=True, seed=0)
    assert got.length.tolist() == [1, 10, 63, 64] and not got.start.any()


def test_sample_params_independent_of_batch_split_and_order():
    rng = np.random.default_rng(1)
    valid, idx = torch.from_numpy(rng.integers(1, 301, 257)), torch.from_numpy(rng.permutation(10000)[:257])
    whole = augment.sample_params(valid, train=True, seed=4, epoch=3, indices=idx)
    perm = torch.from_numpy(rng.permutation(257))
    shuffled = augment.sample_params(valid[perm], train=True, seed=4, epoch=3, indices=idx[perm])
    for field in ("start", "length", "angles"):
        torch.testing.assert_close(getattr(shuffled, field), getattr(whole, field)[perm], rtol=0, atol=0)
        parts = [getattr(augment.sample_params(valid[a:b], train=True, seed=4, epoch=3, indices=idx[a:b]), field)
                 for a, b in ((0, 1), (1, 100), (100, 257))]
        torch.testing.assert_close(torch.cat(parts), getattr(whole, field), rtol=0, atol=0)


def test_sample_params_seed_and_epoch_change_the_stream():
    valid = torch.full((64,), 300)
    a = augment.sample_params(valid, train=True, seed=0, epoch=0)
    for other in (augment.sample_params(valid, train=True, seed=1, epoch=0),
                  augment.sample_params(valid, train=True, seed=0, epoch=1)):
        assert not torch.equal(a.angles, other.angles) and not torch.equal(a.start, other.start)


# ---- optional extras ----------------------------------------------------------------------------

EXTRAS = dict(shear=0.4, noise_sigma=0.05, joint_mask_p=0.3)


@pytest.mark.parametrize("device", DEVICES)
def test_extras_match_float64_reference(device):
    x = random_batch(4, 100, joints=7, bodies=2, seed=9)
    valid, idx = torch.tensor([100, 40, 1, 77]), torch.tensor([3, 1000, 2**33, 7])
    params = augment.sample_params(valid.to(device), train=True, seed=6, epoch=2, indices=idx, num_joints=7, **EXTRAS)
    got = augment.apply(x.to(device), params, 50).cpu()
    p = params.to("cpu")
    want = reference_apply(x.numpy(), p.start.numpy(), p.length.numpy(), p.angles.numpy(), 50, shear=p.shear.numpy(),
                           joint_mask=p.joint_mask.numpy(), noise_key=p.noise_key.numpy(), noise_sigma=0.05)
    assert p.joint_mask.any() and not p.joint_mask.all()
    torch.testing.assert_close(got.double(), torch.from_numpy(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_extras_sampling_matches_numpy_philox(device):
    idx = np.array([0, 5, 2**32 + 1, 123456789])
    got = augment.sample_params(torch.full((4,), 50, device=device), train=True, seed=77, epoch=3,
                                indices=torch.tensor(idx), num_joints=25, **EXTRAS)
    shear, mask, noise_key = reference_extras(77, 3, idx, 0.4, 0.3, 25)
    np.testing.assert_array_equal(got.shear.cpu().numpy(), shear)
    np.testing.assert_array_equal(got.joint_mask.cpu().numpy(), mask)
    np.testing.assert_array_equal(got.noise_key.cpu().numpy(), noise_key)
    # The extras draw from their own words: crop and angles are those of a run without extras.
    plain = augment.sample_params(torch.full((4,), 50, device=device), train=True, seed=77, epoch=3,
                                  indices=torch.tensor(idx))
    for field in ("start", "length", "angles"):
        assert torch.equal(getattr(got, field), getattr(plain, field))


def test_extras_distribution():
    n = 4000
    params = augment.sample_params(torch.full((n,), 64), train=True, theta=0.0, seed=1, num_joints=25, **EXTRAS)
    assert abs(params.joint_mask.float().mean().item() - 0.3) < 0.01
    shear = params.shear.numpy()
    assert (np.abs(shear) <= 0.4).all() and np.allclose(shear.var(0), 0.8**2 / 12, rtol=0.1)
    # Noise alone (no rotation, shear or mask) on a zero input: N(0, sigma^2) per coordinate.
    noise_only = AugParams(params.start[:64], params.length[:64], params.angles[:64], noise_key=params.noise_key[:64],
                           noise_sigma=0.05)
    z = augment.apply(torch.zeros(64, 3, 64, 25, 2), noise_only, 64).double() / 0.05
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    assert abs((z.abs() < 1).double().mean().item() - 0.6827) < 0.005
    assert abs(np.corrcoef(z[:, 0].flatten(), z[:, 2].flatten())[0, 1]) < 0.01


def test_extras_are_train_only_and_off_by_default():
    valid = torch.full((3,), 50)
    for params in (augment.sample_params(valid, train=False, num_joints=25, **EXTRAS),
                   augment.sample_params(valid, train=True)):
        assert params.shear is None and params.joint_mask is None and params.noise_key is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("train", [True, False])
def test_cuda_matches_cpu(train):
    x = random_batch(300, 300, seed=8)
    valid = torch.from_numpy(np.random.default_rng(8).integers(1, 301, 300))
    idx = torch.arange(1000, 1300)
    cpu = augment.sample_params(valid, train=train, seed=5, epoch=9, indices=idx)
    gpu = augment.sample_params(valid.cuda(), train=train, seed=5, epoch=9, indices=idx.cuda())
    for field in ("start", "length", "angles"):  # parameters: bit-identical
        torch.testing.assert_close(getattr(gpu, field).cpu(), getattr(cpu, field), rtol=0, atol=0)
    torch.testing.assert_close(augment.apply(x.cuda(), gpu, 120).cpu(), augment.apply(x, cpu, 120),
                               rtol=1e-5, atol=1e-5)


# ---- torch.library integration ------------------------------------------------------------------

def test_opcheck():
    x = random_batch(3, 40, joints=4, bodies=2)
    params = augment.sample_params(torch.tensor([40, 12, 1]), train=True, seed=0)
    torch.library.opcheck(torch.ops.igm_fast.augment_apply.default,
                          (x, params.start, params.length, params.angles, None, None, None, 0.0, 20))
    extras = augment.sample_params(torch.tensor([40, 12, 1]), train=True, seed=0, shear=0.3, noise_sigma=0.1,
                                   joint_mask_p=0.5, num_joints=4)
    torch.library.opcheck(torch.ops.igm_fast.augment_apply.default,
                          (x, extras.start, extras.length, extras.angles, extras.shear, extras.joint_mask,
                           extras.noise_key, 0.1, 20))
    torch.library.opcheck(torch.ops.igm_fast.augment_sample_params.default,
                          (torch.tensor([40, 12, 1]), torch.tensor([5, 6, 7]), 1, 2, False, 0.5, 1.0, 0.3, 0.2, 0.5, 4))


def test_torch_compile_fullgraph():
    def pipeline(x, valid, idx):
        return augment.augment(x, valid, train=True, out_frames=30, seed=2, epoch=1, indices=idx)

    x = random_batch(4, 50, joints=3, bodies=2)
    valid, idx = torch.tensor([50, 20, 1, 49]), torch.arange(4)
    compiled = torch.compile(pipeline, fullgraph=True)
    torch.testing.assert_close(compiled(x, valid, idx), pipeline(x, valid, idx), rtol=0, atol=0)


# ---- bad input ----------------------------------------------------------------------------------

def good_params(n=2):
    return AugParams(torch.zeros(n, dtype=torch.int64), torch.full((n,), 10), torch.zeros(n, 3))


@pytest.mark.parametrize("x,match", [
    (torch.zeros(2, 3, 10, 5), r"\(N, 3, T, V, M\)"),
    (torch.zeros(2, 2, 10, 5, 2), r"\(N, 3, T, V, M\)"),
    (torch.zeros(2, 3, 10, 5, 2, dtype=torch.int32), "float32, bfloat16 or float16"),
    (torch.zeros(2, 3, 10, 5, 2, dtype=torch.float64), "float32, bfloat16 or float16"),
    (torch.zeros(2, 3, 10, 5, 2, requires_grad=True), "requires grad"),
    (torch.zeros(3, 3, 10, 5, 2), "3 samples of parameters|2 samples of parameters"),
])
def test_apply_rejects_bad_x(x, match):
    with pytest.raises(ValueError, match=match):
        augment.apply(x, good_params(), 8)


@pytest.mark.parametrize("start,length", [([0, 0], [11, 10]), ([0, 0], [0, 10]), ([5, 0], [10, 10]),
                                          ([-1, 0], [5, 10])])
def test_apply_rejects_crop_windows_outside_t(start, length):
    x = torch.zeros(2, 3, 10, 5, 2)
    params = AugParams(torch.tensor(start), torch.tensor(length), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="sample 0 has crop"):
        augment.apply(x, params, 8)
    with pytest.raises(RuntimeError, match="sample 0 has crop"):  # the op checks too (CPU)
        torch.ops.igm_fast.augment_apply(x, params.start, params.length, params.angles, None, None, None, 0.0, 8)


def test_apply_rejects_malformed_params_and_out_frames():
    x = torch.zeros(2, 3, 10, 5, 2)
    with pytest.raises(ValueError, match="out_frames"):
        augment.apply(x, good_params(), 0)
    bad = AugParams(torch.zeros(2, dtype=torch.int64), torch.full((2,), 10), torch.zeros(2, 2))
    with pytest.raises(RuntimeError, match=r"angles must be Float of shape \[2, 3\]"):
        augment.apply(x, bad, 8)
    bad = AugParams(torch.zeros(2, dtype=torch.int32), torch.full((2,), 10), torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="start must be Long"):
        augment.apply(x, bad, 8)
    # a joint mask for another skeleton (V = 4 instead of 5)
    bad = AugParams(torch.zeros(2, dtype=torch.int64), torch.full((2,), 10), torch.zeros(2, 3),
                    joint_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(RuntimeError, match=r"joint_mask must be Bool of shape \[2, 5\]"):
        augment.apply(x, bad, 8)


def test_sample_params_rejects_bad_input():
    with pytest.raises(ValueError, match="integers"):
        augment.sample_params(torch.tensor([10.0]), train=True)
    with pytest.raises(ValueError, match="1-D"):
        augment.sample_params(torch.tensor([[10]]), train=True)
    with pytest.raises(ValueError, match="indices shape"):
        augment.sample_params(torch.tensor([10, 20]), train=True, indices=torch.tensor([1]))
    with pytest.raises(ValueError, match="p_interval"):
        augment.sample_params(torch.tensor([10]), train=True, p_interval=(0.1, 0.5, 0.9))
    with pytest.raises(RuntimeError, match="p_min <= p_max"):
        augment.sample_params(torch.tensor([10]), train=True, p_interval=(0.9, 0.5))
    with pytest.raises(RuntimeError, match="at least one valid frame"):
        augment.sample_params(torch.tensor([10, 0]), train=True)
    with pytest.raises(ValueError, match="needs num_joints"):
        augment.sample_params(torch.tensor([10]), train=True, joint_mask_p=0.1)
    with pytest.raises(ValueError, match="noise_sigma"):
        augment.sample_params(torch.tensor([10]), train=True, noise_sigma=-1.0)
    with pytest.raises(RuntimeError, match="joint_mask_p in"):
        augment.sample_params(torch.tensor([10]), train=True, joint_mask_p=1.5, num_joints=3)
