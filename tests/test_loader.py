"""SkeletonLoader on small prepared splits: shapes, rank partitions, determinism, and that every
batch equals augmenting its samples one by one (so batching, gathering and prefetch are exact)."""
import numpy as np
import pytest
import torch

from igm_fast import augment
from igm_fast.data import layout
from igm_fast.data.loader import SkeletonLoader

N, T, V, M, CLASSES = 29, 90, 5, 2, 4
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")


@pytest.fixture
def split(tmp_path):
    rng = np.random.default_rng(0)
    lengths = np.concatenate([[1, T, 64, 63], rng.integers(1, T + 1, N - 4)])
    x = rng.standard_normal((N, 3, T, V, M)).astype(np.float32)
    for i, length in enumerate(lengths):
        x[i, :, length:] = 0
    layout.write_split(tmp_path, "train", x, lengths, rng.integers(0, CLASSES, N), [f"s{i:03d}" for i in range(N)])
    layout.write_meta(tmp_path, "tiny", CLASSES, V, M, T, [f"c{k}" for k in range(CLASSES)])
    return layout.open_split(tmp_path, "train")


def collect(loader):
    xs, labels, indices = zip(*loader)
    return torch.cat(xs), torch.cat(labels), torch.cat(indices)


def one_by_one(split, indices, *, train, seed, epoch, out_frames=120, **extras):
    """Each sample augmented alone, from the full padded array, keyed by its global index."""
    return torch.cat([augment.augment(torch.from_numpy(np.array(split.x[[i]]))[:, :, :split.lengths[i]],
                                      torch.from_numpy(split.lengths[[i]]), train=train, out_frames=out_frames,
                                      seed=seed, epoch=epoch, indices=torch.tensor([i]), **extras)
                      for i in indices])


@pytest.mark.parametrize("device,data_on_device", [("cpu", "off"), ("cpu", "on"), pytest.param("cuda", "off", marks=CUDA),
                                                   pytest.param("cuda", "auto", marks=CUDA)])
def test_train_batches_shapes_and_contents(split, device, data_on_device):
    loader = SkeletonLoader(split, 8, train=True, device=device, out_frames=40, seed=3, data_on_device=data_on_device)
    assert (loader.resident is not None) == (data_on_device != "off")
    loader.set_epoch(2)
    assert len(loader) == N // 8
    batches = list(loader)
    assert len(batches) == len(loader)
    for x, labels, indices in batches:
        assert x.shape == (8, 3, 40, V, M) and x.dtype == torch.float32
        assert x.device.type == labels.device.type == device and indices.device.type == "cpu"
        assert labels.dtype == torch.int64 and indices.dtype == torch.int64
        np.testing.assert_array_equal(labels.cpu().numpy(), split.labels[indices.numpy()])
        # CPU: bit-identical; CUDA: the same parameters, float32 rounding may differ (FMA)
        tol = 0 if device == "cpu" else 1e-5
        torch.testing.assert_close(x.cpu(), one_by_one(split, indices.numpy(), train=True, seed=3, epoch=2,
                                                       out_frames=40), rtol=tol, atol=tol)


def test_extras_reach_the_augmentation(split):
    extras = dict(shear=0.3, noise_sigma=0.02, joint_mask_p=0.4)
    loader = SkeletonLoader(split, 5, train=True, device="cpu", out_frames=30, seed=2, **extras)
    x, _, indices = collect(loader)
    torch.testing.assert_close(x, one_by_one(split, indices.numpy(), train=True, seed=2, epoch=0, out_frames=30,
                                             **extras), rtol=0, atol=0)
    assert (x.abs().sum(dim=(1, 2, 4)) == 0).float().mean() > 0.2  # masked joints


def test_eval_visits_every_sample_once_over_two_ranks(split):
    seen = []
    for rank in range(2):
        loader = SkeletonLoader(split, 4, train=False, device="cpu", rank=rank, world_size=2)
        x, labels, indices = collect(loader)
        assert len(loader) == -(-len(indices) // 4)
        torch.testing.assert_close(x, one_by_one(split, indices.numpy(), train=False, seed=0, epoch=0),
                                   rtol=0, atol=0)
        seen.append(indices.numpy())
    assert sorted(np.concatenate(seen).tolist()) == list(range(N))  # no sample twice, none missing


def test_train_ranks_are_disjoint_and_equal_sized(split):
    parts = []
    for rank in range(3):
        loader = SkeletonLoader(split, 2, train=True, device="cpu", rank=rank, world_size=3, seed=1)
        loader.set_epoch(5)
        parts.append(loader.rank_indices())
        assert len(loader) == (N // 3) // 2
    assert all(len(p) == N // 3 for p in parts)
    assert len(set(np.concatenate(parts).tolist())) == 3 * (N // 3)


def test_train_epoch_is_deterministic_and_set_epoch_changes_it(split):
    def epoch_data(epoch):
        loader = SkeletonLoader(split, 7, train=True, device="cpu", seed=9)
        loader.set_epoch(epoch)
        return collect(loader)

    a, b, c = epoch_data(1), epoch_data(1), epoch_data(2)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    assert not torch.equal(a[2], c[2])  # another order
    # The same sample gets another augmentation in another epoch.
    common = np.intersect1d(a[2].numpy(), c[2].numpy())[0]
    xa = a[0][(a[2] == common).nonzero()[0, 0]]
    xc = c[0][(c[2] == common).nonzero()[0, 0]]
    assert not torch.equal(xa, xc)


def test_eval_without_drop_last_keeps_the_tail(split):
    loader = SkeletonLoader(split, 8, train=False, device="cpu")
    sizes = [len(indices) for _, _, indices in loader]
    assert sizes == [8, 8, 8, 5]


def test_iteration_can_stop_early(split):
    loader = SkeletonLoader(split, 2, train=True, device="cpu")
    for step, _ in enumerate(loader):
        if step == 1:
            break
    assert len(list(loader)) == len(loader)  # a fresh iteration after an abandoned one


def test_read_errors_reach_the_consumer(split, monkeypatch):
    def broken_read(self, idx):
        raise OSError("disk went away")

    monkeypatch.setattr(SkeletonLoader, "_read_host", broken_read)
    with pytest.raises(OSError, match="disk went away"):
        list(SkeletonLoader(split, 4, train=True, device="cpu"))


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size"),
    (dict(rank=2, world_size=2), "rank 2"),
    (dict(data_on_device="maybe"), "data_on_device"),
])
def test_rejects_bad_arguments(split, kwargs, match):
    args = dict(batch_size=4, train=True, device="cpu") | kwargs
    with pytest.raises(ValueError, match=match):
        SkeletonLoader(split, args.pop("batch_size"), **args)
