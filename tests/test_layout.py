"""The on-disk layout: split round trips and validation, MAMP npz round trips and bad npz files,
whole-dataset atomic writes, centring/padding, valid lengths."""
import numpy as np
import pytest

from igm_fast.data import layout
from igm_fast.io import InputError


def _random_split(rng, n=5, t=12, v=4, m=2, num_classes=3):
    x = rng.standard_normal((n, 3, t, v, m)).astype(np.float32)
    lengths = rng.integers(1, t + 1, n)
    labels = rng.integers(0, num_classes, n)
    return x, lengths, labels, [f"sample{i}" for i in range(n)]


@pytest.fixture
def prepared(tmp_path):
    rng = np.random.default_rng(0)
    splits = {s: _random_split(rng, n=5 if s == "train" else 3) for s in layout.SPLITS}
    root = tmp_path / "toy"
    for split, parts in splits.items():
        layout.write_split(root, split, *parts)
    layout.write_meta(root, "toy", 3, 4, 2, 12, ["a", "b", "c"])
    return root, splits


def test_write_split_open_split_round_trip(prepared):
    root, splits = prepared
    for split, (x, lengths, labels, names) in splits.items():
        s = layout.open_split(root, split)
        assert isinstance(s.x, np.memmap) and len(s) == len(x)
        np.testing.assert_array_equal(s.x, x)
        np.testing.assert_array_equal(s.lengths, lengths)
        np.testing.assert_array_equal(s.labels, labels)
        assert s.names == names and s.meta["class_names"] == ["a", "b", "c"]


def test_open_split_rejects_inconsistent_files(prepared):
    root, _ = prepared
    with pytest.raises(ValueError, match="unknown split"):
        layout.open_split(root, "val")
    np.save(root / "test_len.npy", np.array([1, 2, 99]))
    with pytest.raises(InputError, match="test_len.npy: lengths must lie in"):
        layout.open_split(root, "test")
    np.save(root / "test_x.npy", np.zeros((3, 3, 12, 5, 2), np.float32))
    with pytest.raises(InputError, match=r"test_x.npy: expected float32 \(N, 3, 12, 4, 2\)"):
        layout.open_split(root, "test")
    (root / "train_y.npy").unlink()
    with pytest.raises(InputError, match="train_y.npy: missing"):
        layout.open_split(root, "train")
    (root / "meta.json").write_text("{")
    with pytest.raises(InputError, match="meta.json: invalid JSON"):
        layout.open_split(root, "train")


def test_open_split_rejects_truncated_npy(prepared):
    root, _ = prepared
    path = root / "train_x.npy"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="train_x.npy"):
        layout.open_split(root, "train")


def test_mamp_rows_by_hand():
    x = np.arange(2 * 3 * 4 * 5 * 2, dtype=np.float32).reshape(2, 3, 4, 5, 2)
    rows = layout.to_mamp_rows(x)
    assert rows.shape == (2, 4, 2 * 5 * 3)
    for n, c, t, v, m in [(0, 0, 0, 0, 0), (1, 2, 3, 4, 1), (0, 1, 2, 3, 1), (1, 0, 1, 2, 0)]:
        assert rows[n, t, m * 15 + v * 3 + c] == x[n, c, t, v, m]
    np.testing.assert_array_equal(layout.from_mamp_rows(rows, 5, 2), x)


def test_mamp_npz_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    train, test = (_random_split(rng, n=n, v=25) for n in (4, 2))
    path = tmp_path / "data.npz"
    layout.write_mamp_npz(path, 3, (train[0], train[2], train[3]), (test[0], test[2], test[3]))
    with np.load(path) as f:
        assert f["x_train"].shape == (4, 12, 150) and f["y_train"].shape == (4, 3)
        np.testing.assert_array_equal(f["y_train"].argmax(1), train[2])
        assert f["y_train"].sum() == 4  # one-hot
    back = layout.read_mamp_npz(path)
    for (x, _, labels, names), split in ((train, "train"), (test, "test")):
        np.testing.assert_array_equal(back[split][0], x)
        np.testing.assert_array_equal(back[split][1], labels)
        assert back[split][2] == names


def _save_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_bad_npz_names_the_file(tmp_path):
    good = dict(x_train=np.zeros((2, 5, 150), np.float32), y_train=np.eye(3)[[0, 1]],
                x_test=np.zeros((1, 5, 150), np.float32), y_test=np.eye(3)[[2]])
    missing = _save_npz(tmp_path / "missing.npz", **{k: v for k, v in good.items() if k != "y_test"})
    with pytest.raises(InputError, match=r"missing.npz: missing key 'y_test'"):
        layout.read_mamp_npz(missing)
    wide = _save_npz(tmp_path / "wide.npz", **{**good, "x_train": np.zeros((2, 5, 151), np.float32)})
    with pytest.raises(InputError, match=r"wide.npz: x_train must be \(N, T, 150\)"):
        layout.read_mamp_npz(wide)
    flat = _save_npz(tmp_path / "flat.npz", **{**good, "x_test": np.zeros((5, 150), np.float32)})
    with pytest.raises(InputError, match="flat.npz: x_test must be"):
        layout.read_mamp_npz(flat)
    counts = _save_npz(tmp_path / "counts.npz", **{**good, "y_train": np.eye(3)[[0, 1, 2]]})
    with pytest.raises(InputError, match="counts.npz: x_train has 2 rows but y_train has 3"):
        layout.read_mamp_npz(counts)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="junk.npz: not a readable npz"):
        layout.read_mamp_npz(junk)


def _dataset(root, value, replace):
    x = np.full((2, 3, 4, 5, 1), value, np.float32)
    splits = {s: (x, [4, 4], [0, 1], ["p", "q"]) for s in layout.SPLITS}
    return layout.write_dataset(root, "toy", ["a", "b"], 5, 1, 4, splits, replace=replace)


def test_write_dataset_whole_directory_replace_or_keep(tmp_path):
    root = tmp_path / "toy"
    assert _dataset(root, 1.0, replace=False) == root
    _dataset(root, 2.0, replace=False)  # an existing complete dataset wins
    assert layout.open_split(root, "train").x.max() == 1.0
    _dataset(root, 3.0, replace=True)
    assert layout.open_split(root, "test").x.max() == 3.0
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]  # no temp dirs left behind
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["meta.json"] + [f"{s}_{k}" for s in layout.SPLITS for k in ("x.npy", "len.npy", "y.npy", "names.txt")])


def test_write_dataset_failure_leaves_nothing(tmp_path):
    bad = {"train": (np.zeros((2, 3, 4, 5, 1)), [1], [0, 1], ["p", "q"])}  # one length for two samples
    with pytest.raises(ValueError, match="2 samples but 1 lengths"):
        layout.write_dataset(tmp_path / "toy", "toy", ["a"], 5, 1, 4, bad)
    assert list(tmp_path.iterdir()) == []


def test_centre_and_pad_by_hand():
    seq = np.zeros((3, 2, 2, 3))  # L=3, M=2, V=2
    seq[:, 0, 0] = [[1, 1, 1], [2, 2, 2], [3, 3, 3]]
    seq[:, 0, 1] = [[10, 20, 30], [11, 21, 31], [12, 22, 32]]
    seq[2, 1] = [[5, 5, 5], [6, 6, 6]]  # body 1 only in the last frame
    out, length = layout.centre_and_pad(seq, 5)
    assert out.shape == (3, 5, 2, 2) and out.dtype == np.float32 and length == 3
    # origin = joint 1 of body 0 in frame 0 = (10, 20, 30)
    np.testing.assert_array_equal(out[:, 0, 0, 0], [-9, -19, -29])
    np.testing.assert_array_equal(out[:, 2, 1, 0], [2, 2, 2])
    np.testing.assert_array_equal(out[:, 2, 0, 1], [-5, -15, -25])
    assert not out[:, :2, :, 1].any() and not out[:, 3:].any()  # absent body and padding stay zero


def test_centre_and_pad_uses_first_frame_with_body_zero_and_resamples_long():
    seq = np.zeros((10, 1, 2, 3))
    seq[2:, 0, 1] = np.arange(2, 10)[:, None]  # body absent in frames 0, 1
    seq[2:, 0, 0] = 100
    out, length = layout.centre_and_pad(seq, 4)
    assert length == 4
    # frames 0, 3, 6, 9 of the 10 (uniform nearest-frame sampling); origin is frame 2's joint 1 = 2
    np.testing.assert_array_equal(out[0, :, 1, 0], [0, 1, 4, 7])
    with pytest.raises(ValueError, match="body 0 is absent"):
        layout.centre_and_pad(np.zeros((3, 1, 2, 3)), 4)


def test_valid_lengths_counts_nonzero_frames():
    x = np.zeros((2, 3, 6, 2, 2), np.float32)
    x[0, :, :4, 0, 0] = 1
    x[1, 2, :2, 1, 1] = -0.5
    np.testing.assert_array_equal(layout.valid_lengths(x), [4, 2])
