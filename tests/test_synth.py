"""synth: determinism, balance, splits, forward-kinematics sanity, layout conventions."""
import re

import numpy as np
import pytest

from igm_fast.data import layout, synth
from igm_fast.data.skeletons import NTU25

SMALL = dict(samples_per_class=6, num_subjects=6)
NAME = re.compile(r"synth_C(\d{3})P(\d{3})A(\d{3})I(\d{5})")


@pytest.fixture(scope="module")
def data():
    return synth.generate(seed=0, **SMALL)


def test_same_seed_same_arrays_different_seed_different(data):
    again = synth.generate(seed=0, **SMALL)
    for key in ("x", "lengths", "labels", "subjects", "partners", "cameras"):
        np.testing.assert_array_equal(data[key], again[key])
    assert data["names"] == again["names"]
    other = synth.generate(seed=1, **SMALL)
    assert not np.array_equal(data["x"], other["x"])


def test_a_sample_does_not_depend_on_how_many_are_generated(data):
    fewer = synth.generate(seed=0, samples_per_class=2, num_subjects=6)
    for label in range(len(synth.CLASS_NAMES)):
        np.testing.assert_array_equal(fewer["x"][2 * label:2 * label + 2], data["x"][6 * label:6 * label + 2])


def test_classes_balanced_and_at_least_ten(data):
    assert len(synth.CLASS_NAMES) >= 10
    np.testing.assert_array_equal(np.bincount(data["labels"], minlength=len(synth.CLASS_NAMES)),
                                  [SMALL["samples_per_class"]] * len(synth.CLASS_NAMES))


def test_shapes_lengths_padding_and_bodies(data):
    x, lengths = data["x"], data["lengths"]
    n = len(synth.CLASS_NAMES) * SMALL["samples_per_class"]
    assert x.shape == (n, 3, 300, 25, 2) and x.dtype == np.float32
    assert lengths.min() >= 40 and lengths.max() <= 300
    np.testing.assert_array_equal(layout.valid_lengths(x), lengths)  # every valid frame non-zero
    for i in range(n):
        assert not x[i, :, lengths[i]:].any()
        two_person = synth.CLASS_NAMES[data["labels"][i]] in synth.TWO_PERSON
        body2_frames = np.abs(x[i, :, :lengths[i], :, 1]).sum(axis=(0, 2)) > 0
        assert body2_frames.all() if two_person else not body2_frames.any()


def test_centred_on_spine_middle_of_actor_one_in_frame_zero(data):
    np.testing.assert_array_equal(data["x"][:, :, 0, 1, 0], 0)


def test_bone_lengths_constant_over_time_and_vary_across_subjects():
    clean = synth.generate(seed=3, sensor_noise=0.0, **SMALL)
    lengths_by_subject = {}
    for i in range(len(clean["x"])):
        joints = clean["x"][i, :, :clean["lengths"][i]].astype(np.float64)  # (3, L, V, M)
        for m in range(2 if synth.CLASS_NAMES[clean["labels"][i]] in synth.TWO_PERSON else 1):
            bones = np.stack([np.linalg.norm(joints[:, :, a, m] - joints[:, :, b, m], axis=0) for a, b in NTU25.bones])
            assert np.abs(bones - bones[:, :1]).max() < 1e-5  # float32 storage only
        lengths_by_subject.setdefault(clean["subjects"][i], bones[:, 0])
    per_subject = np.stack(list(lengths_by_subject.values()))
    assert per_subject.std(axis=0).max() > 0.01  # proportions differ between subjects


def test_noise_changes_positions_not_the_motion():
    clean = synth.generate(seed=0, sensor_noise=0.0, samples_per_class=1, num_subjects=3)
    noisy = synth.generate(seed=0, sensor_noise=0.02, samples_per_class=1, num_subjects=3)
    diff = (noisy["x"] - clean["x"])[:, :, :40]
    assert 0.005 < diff.std() < 0.05
    np.testing.assert_array_equal(noisy["lengths"], clean["lengths"])


def test_samples_of_a_class_vary(data):
    first, second = data["x"][0], data["x"][SMALL["num_subjects"]]  # same class, same subject
    assert data["subjects"][0] == data["subjects"][SMALL["num_subjects"]]
    frames = min(data["lengths"][0], data["lengths"][SMALL["num_subjects"]])
    assert np.abs(first[:, :frames] - second[:, :frames]).mean() > 0.01


def test_every_subject_meets_every_camera(data):
    pairs = set(zip(data["subjects"], data["cameras"]))
    assert pairs == {(s, c) for s in range(SMALL["num_subjects"]) for c in range(3)}


@pytest.mark.parametrize("protocol,key", [("xsub", "subjects"), ("xview", "cameras")])
def test_split_indices_disjoint_by_subject_or_camera(data, protocol, key):
    train, test = synth.split_indices(data, protocol, SMALL["num_subjects"])
    assert len(train) and len(test)
    assert sorted(np.concatenate([train, test])) == list(range(len(data["labels"])))
    assert not set(data[key][train]) & set(data[key][test])


def test_prepared_dirs_split_by_subject_and_camera_as_names_say(tmp_path):
    summary = synth.prepare_synth(tmp_path, seed=0, **SMALL)
    assert set(summary) == {"synth", "synth-xview"}
    parts = {}
    for name in summary:
        for split in layout.SPLITS:
            s = layout.open_split(tmp_path / name, split)
            assert len(s) == summary[name][split]
            fields = np.array([[int(g) for g in NAME.fullmatch(n).groups()] for n in s.names])
            np.testing.assert_array_equal(fields[:, 2] - 1, s.labels)
            parts[name, split] = fields
    # xsub: no actor-1 subject on both sides; the test subjects are every third one
    assert not set(parts["synth", "train"][:, 1]) & set(parts["synth", "test"][:, 1])
    assert set(parts["synth", "test"][:, 1] - 1) == set(synth.split_groups(SMALL["num_subjects"])[1])
    # xview: camera 1 is the test view, as in NTU
    assert set(parts["synth-xview", "test"][:, 0]) == {1}
    assert set(parts["synth-xview", "train"][:, 0]) == {2, 3}
    # the MAMP npz holds the same samples as the layout
    npz = layout.read_mamp_npz(summary["synth"]["npz"])
    s = layout.open_split(tmp_path / "synth", "test")
    np.testing.assert_array_equal(npz["test"][0], s.x)
    np.testing.assert_array_equal(npz["test"][1], s.labels)
    assert npz["test"][2] == s.names


def test_two_person_partner_is_another_subject_on_the_same_side_of_the_xsub_split(data):
    train_subjects, test_subjects = synth.split_groups(SMALL["num_subjects"])
    assert sorted(train_subjects + test_subjects) == list(range(SMALL["num_subjects"]))
    two_person = np.isin(data["labels"], [synth.CLASS_NAMES.index(a) for a in synth.TWO_PERSON])
    assert (data["partners"][~two_person] == -1).all()
    for subject, partner in zip(data["subjects"][two_person], data["partners"][two_person]):
        assert partner != subject and (subject in test_subjects) == (partner in test_subjects)
    with pytest.raises(ValueError, match="at least 3 subjects"):
        synth.split_groups(2)


def test_unknown_benchmark(data, tmp_path):
    with pytest.raises(ValueError, match="xsub"):
        synth.split_indices(data, "xset", SMALL["num_subjects"])
    with pytest.raises(ValueError, match=r"unknown synth benchmarks \['xset'\]"):
        synth.prepare_synth(tmp_path, benchmarks=("xset",))
