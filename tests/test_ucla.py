"""NW-UCLA on the real json release in ../shared/data/nw_ucla/all_sqe, plus bad json files."""
import json

import numpy as np
import pytest
import yaml

from conftest import shared_path
from igm_fast.data import layout, ucla
from igm_fast.data.prepare import main as prepare_main
from igm_fast.io import InputError


@pytest.fixture(scope="module")
def raw_dir():
    return shared_path("nw_ucla", "all_sqe")


@pytest.fixture(scope="module")
def prepared(raw_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ucla")
    assert prepare_main(["ucla", "--raw", str(raw_dir), "--out", str(out)]) == 0  # the CLI, as users run it
    return {split: layout.open_split(out / "ucla", split) for split in layout.SPLITS} | {
        f"val_{split}": layout.open_split(out / "ucla-val", split) for split in layout.SPLITS}


def test_split_sizes_shapes_and_labels(prepared):
    train, test = prepared["train"], prepared["test"]
    assert (len(train), len(test)) == (1020, 464)
    for s in (train, test):
        assert s.x.shape[1:] == (3, 300, 20, 1) and s.x.dtype == np.float32
        assert set(s.labels.tolist()) == set(range(10))
        assert s.meta["num_classes"] == 10 and len(s.meta["class_names"]) == 10


def test_views_one_two_train_three_test(prepared):
    assert {ucla.parse_name(n)["view"] for n in prepared["train"].names} == {1, 2}
    assert {ucla.parse_name(n)["view"] for n in prepared["test"].names} == {3}


def test_validation_protocol_never_sees_view_three(prepared):
    """ucla-val: train on view 1, validate on view 2 (for choosing settings); view 3 stays unseen."""
    train, val = prepared["val_train"], prepared["val_test"]
    assert {ucla.parse_name(n)["view"] for n in train.names} == {1}
    assert {ucla.parse_name(n)["view"] for n in val.names} == {2}
    assert len(train) + len(val) == len(prepared["train"])
    assert set(train.names) | set(val.names) == set(prepared["train"].names)


def test_input_statistics_are_the_training_splits_valid_frames(prepared, raw_dir):
    """meta's input_mean / input_std = per-axis mean / std of every joint of every frame of the
    training files, recomputed in float64 from the json (centred on joint 1 of frame 0)."""
    import json
    for key, views in (("train", (1, 2)), ("val_train", (1,))):
        coords = []
        for path in sorted(raw_dir.glob("*.json")):
            if ucla.parse_name(path.stem)["view"] in views:
                sk = np.asarray(json.loads(path.read_text())["skeletons"], np.float64)
                coords.append((sk - sk[0, 1]).reshape(-1, 3))
        coords = np.concatenate(coords)
        meta = prepared[key].meta
        np.testing.assert_allclose(meta["input_mean"], coords.mean(0), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(meta["input_std"], coords.std(0), rtol=1e-6)
    assert prepared["test"].meta["input_mean"] == prepared["train"].meta["input_mean"]  # from train only


def test_label_matches_the_action_in_the_file_name(prepared):
    for s in prepared.values():
        actions = [ucla.parse_name(n)["action"] for n in s.names]
        np.testing.assert_array_equal([ucla.ACTION_IDS.index(a) for a in actions], s.labels)


def test_samples_equal_the_json_centred_and_padded(prepared, raw_dir):
    s = prepared["test"]
    for i in (0, 17, len(s) - 1, int(np.argmax(s.lengths))):
        raw = np.array(json.loads((raw_dir / f"{s.names[i]}.json").read_text())["skeletons"], np.float64)
        assert s.lengths[i] == len(raw)
        expected = raw - raw[0, 1]  # joint 1 (spine) of frame 0 at the origin
        np.testing.assert_allclose(s.x[i, :, :len(raw), :, 0], expected.transpose(2, 0, 1), atol=1e-6)
        assert not s.x[i, :, len(raw):].any()
    np.testing.assert_array_equal(s.x[:, :, 0, 1, 0], 0)


def test_read_sample_of_one_real_file(raw_dir):
    skeleton, label = ucla.read_sample(raw_dir / "a12_s03_e02_v02.json")
    assert skeleton.ndim == 3 and skeleton.shape[1:] == (20, 3) and skeleton.dtype == np.float32
    assert label == ucla.ACTION_IDS.index(12) == 9


@pytest.mark.parametrize("content,message", [
    ("{", "invalid JSON"),
    ('{"skeletons": [[[0, 0, 1]]]}', "keys 'skeletons' and 'label'"),
    ('{"skeletons": [[[0, 0, 1]]], "label": 11}', "label must be an integer in 1..10"),
    ('{"skeletons": [' + ",".join(["[[1, 2, 3]]"] * 2) + '], "label": 1}', r"T x 20 x 3 with T >= 1, found \(2, 1, 3\)"),
    ('{"skeletons": [], "label": 1}', "T x 20 x 3 with T >= 1"),
    ('{"skeletons": [[["a", 0, 1]]], "label": 1}', "not a T x 20 x 3 array of numbers"),
])
def test_bad_json_names_the_file(tmp_path, content, message):
    path = tmp_path / "a01_s01_e00_v01.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as err:
        ucla.read_sample(path)
    assert str(path) in str(err.value)


def test_prepare_errors_name_the_file_and_leave_nothing(tmp_path, raw_dir):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("a01_s01_e00_v01", "a01_s01_e00_v03"):
        (raw / f"{name}.json").write_text((raw_dir / f"{name}.json").read_text())
    (raw / "a02_s01_e00_v01.json").write_text(json.dumps({"skeletons": [[[0, 0, 0]] * 20], "label": 2}))
    with pytest.raises(InputError, match="a02_s01_e00_v01.json: every joint of every frame is zero"):
        ucla.prepare(raw, tmp_path / "out", progress=False)
    (raw / "a02_s01_e00_v01.json").unlink()
    (raw / "a01_s01_e00_v03.json").unlink()
    with pytest.raises(InputError, match="no test samples"):
        ucla.prepare(raw, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "ucla").exists()
    with pytest.raises(InputError, match="not an NW-UCLA sample name"):
        ucla.parse_name("walk_v01")


@pytest.mark.slow
def test_benchmark_tiny_run_writes_its_table_and_json(tmp_path, raw_dir):
    from bench.ucla_benchmark import main as benchmark

    out = tmp_path / "bench"
    benchmark(["--tiny", "--protocol", "val", "--seed", "3", "--raw", str(raw_dir), "--out", str(out)])
    report = json.loads((out / "ucla_benchmark.json").read_text())
    assert report["dataset"] == "ucla-val" and report["seed"] == 3
    frozen = report["results"]["IGM pretrained encoder"]
    assert 0 <= frozen["linear"]["top1"] <= 100 and frozen["knn"]["feature_effective_rank"] >= 1
    for label in ("same encoder, supervised from scratch (upper reference)", "IGM pretrained encoder, finetuned"):
        assert 0 <= report["results"][label]["top1"] <= 100
    table = (out / "ucla_benchmark.md").read_text()
    assert "view 1 -> view 2" in table and "--seed 3 --protocol val --tiny" in table
    pretrain_cfg = yaml.safe_load((out / "pretrain" / "config.yaml").read_text())
    assert pretrain_cfg["seed"] == 3 and pretrain_cfg["dataset"] == "ucla-val"
