"""Dataset names -> prepared dirs (synth generated on first use), errors, SkeletonDataset, and the
prepare CLI on synth and on npz import."""
import pickle
import threading

import numpy as np
import pytest
import torch

from conftest import shared_path
from igm_fast.data import dataset, layout, synth
from igm_fast.data.prepare import main as prepare_main
from igm_fast.io import InputError

TINY = dict(seed=0, samples_per_class=3, num_subjects=3)


@pytest.fixture
def tiny_synth_default(monkeypatch):
    """Make the synth generated on first use tiny, so tests exercise the real first-use path fast."""
    monkeypatch.setattr(dataset, "SYNTH_DEFAULTS", TINY)


@pytest.mark.parametrize("name", ["synth", "synth-xview"])
def test_synth_generated_on_first_use_then_reused(tmp_path, tiny_synth_default, name):
    split = dataset.load_split(name, "train", data_root=tmp_path)
    assert isinstance(split, layout.Split) and split.meta["name"] == name
    assert split.x.shape[1:] == (3, 300, 25, 2)
    test = dataset.load_split(name, "test", data_root=tmp_path)
    assert len(split) + len(test) == len(synth.CLASS_NAMES) * TINY["samples_per_class"]
    expected = synth.generate(**TINY)
    train_idx, _ = synth.split_indices(expected, name.removeprefix("synth-") if "-" in name else "xsub", 3)
    np.testing.assert_array_equal(split.x, expected["x"][train_idx])
    mtime = (tmp_path / name / "meta.json").stat().st_mtime_ns
    dataset.load_split(name, "train", data_root=tmp_path)
    assert (tmp_path / name / "meta.json").stat().st_mtime_ns == mtime  # not regenerated
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp dirs, no npz


def test_two_ranks_generating_together_both_get_a_complete_dataset(tmp_path, tiny_synth_default):
    results, errors = [], []

    def rank():
        try:
            results.append(len(dataset.load_split("synth", "train", data_root=tmp_path)))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=rank) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and results[0] == results[1] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]


def test_default_data_root_from_environment(tmp_path, monkeypatch, tiny_synth_default):
    monkeypatch.setenv("IGM_DATA", str(tmp_path / "env_root"))
    dataset.load_split("synth", "test")
    assert (tmp_path / "env_root" / "synth" / "meta.json").is_file()
    monkeypatch.delenv("IGM_DATA")
    monkeypatch.chdir(tmp_path)
    assert dataset.default_data_root().resolve() == (tmp_path / "data_cache").resolve()


def test_missing_real_dataset_says_which_command_to_run(tmp_path):
    with pytest.raises(InputError) as err:
        dataset.load_split("ntu60-xsub", "train", data_root=tmp_path)
    assert f"python -m igm_fast.data.prepare ntu60 --raw NTU_SKELETON_DIR --out {tmp_path}" in str(err.value)
    with pytest.raises(InputError, match="prepare pku2 --skeletons DIR --labels DIR --splits DIR"):
        dataset.load_split("pku2-xview", "test", data_root=tmp_path)
    with pytest.raises(InputError, match="prepare ucla --raw"):
        dataset.load_split("ucla", "test", data_root=tmp_path)


def test_every_contract_name_resolves_somewhere():
    assert set(dataset.DATASET_NAMES) == {
        "synth", "synth-xview", "ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset",
        "pku1-xsub", "pku1-xview", "pku2-xsub", "pku2-xview", "ucla", "ucla-val"}


def test_unknown_name_or_unprepared_path(tmp_path):
    with pytest.raises(InputError, match="neither a dataset name .*synth, synth-xview, ntu60-xsub.*prepared under"):
        dataset.load_split("ntu61-xsub", "train", data_root=tmp_path)
    with pytest.raises(InputError, match="no meta.json"):
        dataset.load_split(str(tmp_path), "train")


def test_generate_synth_returns_a_dir_that_load_split_opens_by_path_and_by_name(tmp_path):
    path = dataset.generate_synth(tmp_path, samples_per_class=3, num_subjects=3, benchmark="xview")
    assert path == tmp_path / "synth-xview"
    by_path = dataset.load_split(str(path), "test")
    by_name = dataset.load_split("synth-xview", "test", data_root=tmp_path)
    np.testing.assert_array_equal(by_path.x, by_name.x)
    assert by_path.names == by_name.names and len(by_path) > 0


def test_skeleton_dataset_items(tmp_path):
    split = dataset.load_split(dataset.generate_synth(tmp_path, samples_per_class=2, num_subjects=3), "train")
    ds = dataset.SkeletonDataset(split)
    assert len(ds) == len(split)
    for index in (0, len(ds) - 1):
        x, length, label, got_index = ds[index]
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (3, 300, 25, 2)
        np.testing.assert_array_equal(x.numpy(), split.x[index])
        assert (length, label, got_index) == (split.lengths[index], split.labels[index], index)
    x[:] = 0  # items are copies: the memory map stays read-only and untouched
    assert split.x[len(ds) - 1].any()


def test_skeleton_dataset_pickles_the_file_name_not_the_array(tmp_path):
    split = dataset.load_split(dataset.generate_synth(tmp_path, samples_per_class=2, num_subjects=3), "train")
    ds = dataset.SkeletonDataset(split)
    blob = pickle.dumps(ds)
    assert len(blob) < split.x.nbytes / 10
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone[3][0].numpy(), split.x[3])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 300, 25, 2) and batch[3].tolist() == [0, 1, 2, 3]


def test_cli_synth_writes_layout_and_npz(tmp_path, capsys):
    code = prepare_main(["synth", "--out", str(tmp_path), "--samples-per-class", "3", "--subjects", "3",
                         "--seed", "5"])
    assert code == 0
    out = capsys.readouterr().out
    assert "synth:" in out and "synth-xview:" in out and str(tmp_path / "synth") in out
    expected = synth.generate(seed=5, samples_per_class=3, num_subjects=3)
    for name, protocol, npz_name in (("synth", "xsub", "Synth_XSub.npz"), ("synth-xview", "xview", "Synth_XView.npz")):
        _, test_idx = synth.split_indices(expected, protocol, 3)
        split = layout.open_split(tmp_path / name, "test")
        np.testing.assert_array_equal(split.x, expected["x"][test_idx])
        np.testing.assert_array_equal(layout.read_mamp_npz(tmp_path / npz_name)["test"][0], split.x)


def test_cli_npz_import_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = np.zeros((5, 3, 10, 25, 2), np.float32)
    lengths = np.array([10, 3, 7, 1, 0])  # the last sample is all zero: skipped
    for i, n in enumerate(lengths):
        x[i, :, :n] = rng.standard_normal((3, n, 25, 2))
    labels = np.array([0, 2, 1, 1, 0])
    layout.write_mamp_npz(tmp_path / "in.npz", 3, (x[:3], labels[:3], ["a", "b", "c"]),
                          (x[3:], labels[3:], ["d", "e"]))
    assert prepare_main(["npz", str(tmp_path / "in.npz"), "--name", "mine", "--joints", "25",
                         "--out", str(tmp_path)]) == 0
    train = dataset.load_split("mine", "train", data_root=tmp_path)
    np.testing.assert_array_equal(train.x, x[:3])
    np.testing.assert_array_equal(train.lengths, lengths[:3])
    np.testing.assert_array_equal(train.labels, labels[:3])
    test = dataset.load_split(str(tmp_path / "mine"), "test")
    assert test.names == ["d"] and test.meta["max_frames"] == 10 and test.meta["num_classes"] == 3


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"junk")
    assert prepare_main(["npz", str(tmp_path / "bad.npz"), "--name", "x", "--joints", "25",
                         "--out", str(tmp_path)]) == 1
    assert "bad.npz: not a readable npz" in capsys.readouterr().err


def test_cli_ntu60_on_the_real_raw_samples_then_load_split_by_name(tmp_path, capsys):
    raw = shared_path("ntu_raw_samples")
    assert prepare_main(["ntu60", "--raw", str(raw), "--out", str(tmp_path), "--workers", "1"]) == 0
    assert f"written under {tmp_path.resolve()}" in capsys.readouterr().out
    for name in ("ntu60-xsub", "ntu60-xview"):
        train, test = (dataset.load_split(name, s, data_root=tmp_path) for s in layout.SPLITS)
        assert len(train) + len(test) == 7 and train.x.shape[1:] == (3, 300, 25, 2)


def test_cli_rejects_unknown_synth_benchmark(tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepare_main(["synth", "--benchmarks", "xsub,xset", "--out", str(tmp_path)])
    assert "'xsub,xset': expected a comma-separated subset of xsub,xview" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
