"""NTU RGB+D raw pipeline: the reference's outputs on real files, each denoising rule on hand-built
files with hand-derived expectations, splits on the real name list, bad inputs, and `prepare`."""
import shutil

import numpy as np
import pytest
from conftest import shared_path
from data_helpers import frames_from_tracks, lying_pose, skeleton_text, standing_pose, write_skeleton

from igm_fast.data import layout, ntu
from igm_fast.io import InputError

REAL_NAMES = ("S001C001P001R001A001", "S001C001P001R001A050", "S017C003P020R002A054",
              "S017C003P020R002A055", "S017C003P020R002A056", "S017C003P020R002A057",
              "S017C003P020R002A058")


def raw_file(name):
    return shared_path("ntu_raw_samples", f"{name}.skeleton")


@pytest.fixture(scope="module")
def expected_parse():
    return np.load(shared_path("ntu_raw_samples", "expected_parse.npz"))


@pytest.fixture(scope="module")
def expected_preprocess():
    return np.load(shared_path("ntu_raw_samples", "expected_preprocess.npz"))


def moving(n, step, x=0.0):
    """n standing poses sliding along x by `step` per frame (motion grows with step)."""
    return np.stack([standing_pose(x + step * f) for f in range(n)])


def still(n, x=0.0):
    return np.stack([standing_pose(x)] * n)


def centred(poses, origin):
    """Hand-derived centring: every joint minus the origin, flattened to (F, 75)."""
    return (poses - origin).reshape(len(poses), 75)


# ---- the reference's outputs on real recordings ----------------------------------------------------

def assert_parse_equal(skeleton, expected, name):
    assert skeleton.num_frames == expected[f"{name}__num_frames"]
    assert sorted(skeleton.bodies) == sorted(expected[f"{name}__body_ids"].tolist())
    for body_id, body in skeleton.bodies.items():
        key = f"{name}__{body_id}__"
        np.testing.assert_array_equal(body.joints, expected[key + "joints"])
        np.testing.assert_array_equal(body.colors, expected[key + "colors"])
        np.testing.assert_array_equal(body.interval, expected[key + "interval"])
        assert body.joints.dtype == body.colors.dtype == np.float32
        if key + "motion" in expected.files:
            assert body.motion.dtype == np.float32 and body.motion == expected[key + "motion"]
        else:
            assert body.motion is None


@pytest.mark.parametrize("name", REAL_NAMES)
def test_parse_equals_reference_exactly(name, expected_parse):
    skeleton = ntu.read_skeleton(raw_file(name))
    assert_parse_equal(skeleton, expected_parse, name)
    assert skeleton.dropped_frames == []


def test_crlf_file_parses_identically(tmp_path, expected_parse):
    name = "S001C001P001R001A050"
    text = raw_file(name).read_bytes()
    assert b"\r" not in text
    crlf = tmp_path / f"{name}.skeleton"
    crlf.write_bytes(text.replace(b"\n", b"\r\n"))
    assert_parse_equal(ntu.read_skeleton(crlf), expected_parse, name)
    np.testing.assert_array_equal(ntu.preprocess(crlf), ntu.preprocess(raw_file(name)))


@pytest.mark.parametrize("name", REAL_NAMES)
def test_preprocess_equals_reference(name, expected_preprocess):
    actors = ntu.extract_actors(ntu.read_skeleton(raw_file(name)))
    np.testing.assert_array_equal(actors.joints, expected_preprocess[f"{name}__preprocessed"])
    first_of_each_actor = [str(ids[0]) for ids in actors.body_ids if ids]
    assert first_of_each_actor == expected_preprocess[f"{name}__actor_body_ids"].tolist()

    rows = ntu.preprocess(raw_file(name))
    assert rows.dtype == np.float32 and rows.shape == (len(actors.joints), 150)
    np.testing.assert_array_equal(ntu.pad_frames(rows), expected_preprocess[f"{name}__ntu60_aligned"])
    assert int(name[-3:]) - 1 == expected_preprocess[f"{name}__label"]


def test_a055_actor_order_comes_from_motion_after_the_spread_rule(expected_parse):
    # parse-time motion ranks body ...959 first; the spread rule lowers it, so ...917 is actor 1
    name = "S017C003P020R002A055"
    motion = {b: expected_parse[f"{name}__{b}__motion"] for b in (72057594037937917, 72057594037937959)}
    assert motion[72057594037937959] > motion[72057594037937917]
    actors = ntu.extract_actors(ntu.read_skeleton(raw_file(name)))
    assert actors.body_ids == [[72057594037937917], [72057594037937959]]


def test_single_actor_padding_rule_per_version(expected_preprocess):
    name = "S001C001P001R001A001"
    one_actor = expected_preprocess[f"{name}__preprocessed"]
    assert one_actor.shape[1] == 75
    ntu60 = ntu.preprocess(raw_file(name), version="ntu60")
    ntu120 = ntu.preprocess(raw_file(name), version="ntu120")
    np.testing.assert_array_equal(ntu60, np.hstack([one_actor, np.zeros_like(one_actor)]))
    np.testing.assert_array_equal(ntu120, np.hstack([one_actor, one_actor]))
    padded = ntu.pad_frames(ntu120)
    assert padded.shape == (300, 150)
    np.testing.assert_array_equal(padded[:len(one_actor)], ntu120)
    assert not padded[len(one_actor):].any()


# ---- hand-built files: one denoising rule each, expectations derived by hand -----------------------

def test_parse_handmade_drops_empty_frames_and_keeps_the_interval_quirk(tmp_path):
    a, b = still(4, x=-1.0), moving(3, 0.25, x=1.0)
    frames = [[(7, a[0])], [], [(7, a[1]), (9, b[0])], [(9, b[1])], [(7, a[2]), (9, b[2])], [(7, a[3])]]
    skeleton = ntu.read_skeleton(write_skeleton(tmp_path / "S001C001P001R001A050.skeleton", frames))
    assert skeleton.num_frames == 5 and skeleton.dropped_frames == [1]
    assert list(skeleton.bodies) == [7, 9]
    # body 7 is in kept frames 0, 1, 3, 4; the reference numbers them first + 0..3 all the same
    np.testing.assert_array_equal(skeleton.bodies[7].interval, [0, 1, 2, 3])
    np.testing.assert_array_equal(skeleton.bodies[9].interval, [1, 2, 3])
    np.testing.assert_array_equal(skeleton.bodies[7].joints, a.reshape(-1, 3))
    np.testing.assert_array_equal(skeleton.bodies[9].joints, b.reshape(-1, 3))
    # colours are (100 * file frame + joint, 1000 + joint): body 9 is in file frames 2, 3, 4
    j = np.arange(25)
    want = np.stack([np.stack([100 * f + j, 1000 + j], axis=1) for f in (2, 3, 4)]).astype(np.float32)
    np.testing.assert_array_equal(skeleton.bodies[9].colors, want)
    for body_id, poses in ((7, a), (9, b)):
        by_hand = np.asarray(poses, np.float64).reshape(-1, 3).var(axis=0).sum()
        np.testing.assert_allclose(skeleton.bodies[body_id].motion, by_hand, rtol=1e-5)


@pytest.mark.parametrize("short_length, actor1", [(11, 1), (12, 3)])
def test_length_rule_drops_bodies_seen_in_11_frames_or_fewer(tmp_path, short_length, actor1):
    # body 3 moves the most, so it leads unless the length rule removes it (<= 11 frames)
    tracks = {1: (0, moving(20, 0.05)), 2: (0, still(20, x=1.0)), 3: (0, moving(short_length, 0.5, x=-2.0))}
    path = write_skeleton(tmp_path / "S001C001P001R001A050.skeleton", frames_from_tracks(20, tracks))
    actors = ntu.extract_actors(ntu.read_skeleton(path))
    assert actors.body_ids[0][0] == actor1
    if actor1 == 1:
        origin = tracks[1][1][0, 1]
        assert actors.body_ids == [[1], [2]]
        np.testing.assert_array_equal(actors.joints[:, :75], centred(tracks[1][1], origin))
        np.testing.assert_array_equal(actors.joints[:, 75:], centred(tracks[2][1], origin))


def noisy_track(num_noisy, n=20):
    """A body standing still except `num_noisy` frames lying far away (big raw motion)."""
    poses = still(n, x=1.0)
    poses[:num_noisy] = np.stack([lying_pose(x=4.0 + 0.5 * f) for f in range(num_noisy)])
    return poses


def test_spread_rule_drops_a_body_with_70_percent_noisy_frames(tmp_path):
    # 14 / 20 = 0.70 >= 0.69754: the noisy body goes; one actor is left -> (T, 75)
    walker = moving(20, 0.05)
    tracks = {1: (0, walker), 2: (0, noisy_track(14))}
    path = write_skeleton(tmp_path / "S001C001P001R001A050.skeleton", frames_from_tracks(20, tracks))
    actors = ntu.extract_actors(ntu.read_skeleton(path))
    assert actors.body_ids == [[1]]
    np.testing.assert_array_equal(actors.joints, centred(walker, walker[0, 1]))
    np.testing.assert_array_equal(ntu.preprocess(path)[:, 75:], 0)


def test_spread_rule_keeps_a_body_below_the_ratio_and_ranks_it_by_its_valid_frames(tmp_path):
    # 13 / 20 = 0.65 < 0.69754: kept, noisy frames and all, but its motion is recomputed on the
    # 7 valid (still) frames, so the walker, whose parse-time motion is lower, becomes actor 1
    walker, noisy = moving(20, 0.05), noisy_track(13)
    tracks = {2: (0, noisy), 1: (0, walker)}
    path = write_skeleton(tmp_path / "S001C001P001R001A050.skeleton", frames_from_tracks(20, tracks))
    skeleton = ntu.read_skeleton(path)
    assert skeleton.bodies[2].motion > skeleton.bodies[1].motion
    actors = ntu.extract_actors(skeleton)
    assert actors.body_ids == [[1], [2]]
    origin = walker[0, 1]
    np.testing.assert_array_equal(actors.joints, np.hstack([centred(walker, origin), centred(noisy, origin)]))


def test_overlapping_third_body_is_dropped_and_a_later_body_continues_actor_1(tmp_path):
    # motion order A(1) > B(2) > C(3) > D(4). A: frames 0-14 -> actor 1. B: 0-29 overlaps A -> actor 2.
    # C: 5-24 overlaps both -> dropped. D: 15-29 does not overlap actor 1's 0-14 -> joins actor 1.
    a, b, c, d = moving(15, 0.1), moving(30, 0.03, x=1.0), moving(20, 0.025, x=-1.0), still(15, x=2.0)
    tracks = {1: (0, a), 2: (0, b), 3: (5, c), 4: (15, d)}
    path = write_skeleton(tmp_path / "S001C001P001R001A050.skeleton", frames_from_tracks(30, tracks))
    actors = ntu.extract_actors(ntu.read_skeleton(path))
    assert actors.body_ids == [[1, 4], [2]]
    origin = a[0, 1]
    want = np.hstack([centred(np.concatenate([a, d]), origin), centred(b, origin)])
    np.testing.assert_array_equal(actors.joints, want)


def test_frames_missing_an_actor_stay_zero_and_frames_missing_both_are_removed(tmp_path):
    # kept frames: B (less motion) in 0-13, A in 3-22, a 5-frame noise body E in 23-27 (dropped by
    # length), plus an empty frame in the file. After denoising frames 23-27 hold no actor: removed.
    a, b, e = moving(20, 0.05), still(14, x=1.0), moving(5, 0.5)
    frames = frames_from_tracks(28, {2: (0, b), 1: (3, a), 5: (23, e)})
    frames.insert(10, [])
    skeleton = ntu.read_skeleton(write_skeleton(tmp_path / "S001C001P001R001A050.skeleton", frames))
    assert skeleton.dropped_frames == [10] and skeleton.num_frames == 28
    actors = ntu.extract_actors(skeleton)
    assert actors.body_ids == [[1], [2]]
    origin = a[0, 1]  # joint 2 of actor 1 in ITS first frame (kept frame 3), not frame 0
    want = np.zeros((23, 150), np.float32)
    want[3:23, :75] = centred(a, origin)
    want[0:14, 75:] = centred(b, origin)
    np.testing.assert_array_equal(actors.joints, want)


def test_files_without_a_usable_body(tmp_path):
    empty = write_skeleton(tmp_path / "S001C001P001R001A001.skeleton", [[], [], []])
    skeleton = ntu.read_skeleton(empty)
    assert skeleton.bodies == {} and skeleton.dropped_frames == [0, 1, 2]
    with pytest.raises(ntu.NoBodyError, match="no body"):
        ntu.preprocess(empty)
    short = write_skeleton(tmp_path / "S001C001P001R001A002.skeleton",
                           frames_from_tracks(8, {1: (0, still(8)), 2: (0, still(8, x=1.0))}))
    with pytest.raises(ntu.NoBodyError, match="<= 11 frames"):
        ntu.preprocess(short)


# ---- bad input: one clear error naming the file and line ------------------------------------------

def real_lines(name="S001C001P001R001A001"):
    return raw_file(name).read_text().split("\n")


def write_lines(tmp_path, lines):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text("\n".join(lines))
    return path


def test_truncated_file(tmp_path):
    path = write_lines(tmp_path, real_lines()[:1000])
    with pytest.raises(InputError, match=rf"{path.name}:1001: file ends early; expected 25 joint lines"):
        ntu.read_skeleton(path)


def test_wrong_joint_count(tmp_path):
    lines = real_lines()
    assert lines[3] == "25"  # frames, bodies, body line, joint count
    lines[3] = "24"
    with pytest.raises(InputError, match=r"S001C001P001R001A001.skeleton:4: expected 25 joints, found 24"):
        ntu.read_skeleton(write_lines(tmp_path, lines))


def test_non_numeric_token(tmp_path):
    lines = real_lines()
    tokens = lines[40].split()
    tokens[2] = "abc"
    lines[40] = " ".join(tokens)
    with pytest.raises(InputError, match=r"S001C001P001R001A001.skeleton:41: expected 12 numbers, found 'abc'"):
        ntu.read_skeleton(write_lines(tmp_path, lines))


def test_joint_line_with_missing_values(tmp_path):
    lines = real_lines()
    lines[100] = " ".join(lines[100].split()[:7])
    with pytest.raises(InputError, match=r":101: expected a joint line of 12 numbers, found 7 values"):
        ntu.read_skeleton(write_lines(tmp_path, lines))


def test_non_numeric_count(tmp_path):
    lines = real_lines()
    lines[0] = "many"
    with pytest.raises(InputError, match=r":1: expected the number of frames \(an integer >= 0\), found 'many'"):
        ntu.read_skeleton(write_lines(tmp_path, lines))


def test_empty_file(tmp_path):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text("")
    with pytest.raises(InputError, match=rf"{path.name}:1: empty file; expected the number of frames"):
        ntu.read_skeleton(path)


def test_trailing_garbage(tmp_path):
    lines = real_lines()[:-1] + ["1", ""]
    with pytest.raises(InputError, match=rf":{len(lines) - 1}: unexpected content after the last of 103 frames"):
        ntu.read_skeleton(write_lines(tmp_path, lines))


def test_body_repeated_in_one_frame(tmp_path):
    pose = standing_pose()
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text(skeleton_text([[(5, pose), (5, pose)]]))
    with pytest.raises(InputError, match=r":30: body 5 appears twice in frame 0"):
        ntu.read_skeleton(path)


# ---- splits ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ntu60_names():
    return shared_path("ntu60_statistics", "skes_available_name.txt").read_text().split()


@pytest.mark.parametrize("bench_name, sizes", [("ntu60-xsub", (40091, 16487)), ("ntu60-xview", (37646, 18932))])
def test_split_sizes_on_the_real_name_list(ntu60_names, bench_name, sizes):
    train, test = ntu.split_names(ntu60_names, bench_name)
    assert (len(train), len(test)) == sizes
    assert not set(train) & set(test)


def test_split_membership_and_order_follow_the_statistics_files(ntu60_names):
    performer = np.array(shared_path("ntu60_statistics", "performer.txt").read_text().split(), int)
    camera = np.array(shared_path("ntu60_statistics", "camera.txt").read_text().split(), int)
    names = np.array(ntu60_names)
    # the reference stacks the samples of each listed id in turn (ids in list order, names in file order)
    train_subjects = [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]
    train, test = ntu.split_names(ntu60_names, "ntu60-xsub")
    assert train == [n for s in train_subjects for n in names[performer == s]]
    assert test == [n for s in range(1, 41) if s not in train_subjects for n in names[performer == s]]
    train, test = ntu.split_names(ntu60_names, "ntu60-xview")
    assert train == [n for c in (2, 3) for n in names[camera == c]]
    assert test == list(names[camera == 1])


def test_ntu120_splits_by_hand():
    names = ["S018C001P045R001A061", "S002C002P044R002A120", "S001C003P103R001A001", "S032C001P106R002A100"]
    train, test = ntu.split_names(names, "ntu120-xsub")  # 45 and 103 are training subjects
    assert train == ["S018C001P045R001A061", "S001C003P103R001A001"]
    assert test == ["S002C002P044R002A120", "S032C001P106R002A100"]
    train, test = ntu.split_names(names, "ntu120-xset")  # even setups train, ordered by setup
    assert train == ["S002C002P044R002A120", "S018C001P045R001A061", "S032C001P106R002A100"]
    assert test == ["S001C003P103R001A001"]


def test_unknown_benchmark_and_bad_names():
    with pytest.raises(ValueError, match="unknown NTU benchmark 'ntu60-xset'") as error:
        ntu.split_names(["S001C001P001R001A001"], "ntu60-xset")
    assert all(name in str(error.value) for name in ("ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset"))
    with pytest.raises(ValueError, match="'S01C001P001R001A001' is not an NTU sample name"):
        ntu.split_names(["S01C001P001R001A001"], "ntu60-xsub")
    with pytest.raises(ValueError, match="subject 41 belongs to neither side of ntu60-xsub"):
        ntu.split_names(["S018C001P041R001A001"], "ntu60-xsub")


def test_class_names():
    assert len(ntu.CLASS_NAMES["ntu60"]) == 60 and len(ntu.CLASS_NAMES["ntu120"]) == 120
    assert len(set(ntu.CLASS_NAMES["ntu120"])) == 120
    assert ntu.CLASS_NAMES["ntu60"][49] == "punching/slapping other person"
    assert ntu.CLASS_NAMES["ntu120"][119].startswith("finger-guessing game")


# ---- prepare ---------------------------------------------------------------------------------------

NTU120_ONLY = "S018C001P045R001A061"  # a copy of REAL_NAMES[0] under an NTU120 name (setup 18, subject 45)


def source_of(name):
    return raw_file(REAL_NAMES[0] if name == NTU120_ONLY else name)


@pytest.fixture
def raw_dir(tmp_path):
    raw = tmp_path / "raw"
    (raw / "part2").mkdir(parents=True)
    for i, name in enumerate(REAL_NAMES):  # found recursively, as NTU120's two folders are
        shutil.copy(raw_file(name), raw / ("part2" if i % 2 else "") / f"{name}.skeleton")
    write_skeleton(raw / "S002C001P003R001A010.skeleton", [[], []])  # no body at all
    shutil.copy(source_of(NTU120_ONLY), raw / f"{NTU120_ONLY}.skeleton")
    return raw


def check_outputs(out, version, dataset_dir, npz_name, names_by_side):
    """Both output formats hold, row for row, the padded `preprocess` of each named raw file."""
    mamp = layout.read_mamp_npz(out / npz_name)
    raw_npz = np.load(out / npz_name)
    num_classes = len(ntu.CLASS_NAMES[version])
    for side, names in names_by_side.items():
        want_rows = np.zeros((len(names), 300, 150), np.float32)
        for row, name in zip(want_rows, names):
            row[:] = ntu.pad_frames(ntu.preprocess(source_of(name), version))
        want_labels = [int(n[-3:]) - 1 for n in names]
        x, labels, npz_names = mamp[side]
        assert npz_names == names
        np.testing.assert_array_equal(layout.to_mamp_rows(x), want_rows)
        np.testing.assert_array_equal(labels, want_labels)
        assert raw_npz[f"x_{side}"].shape == (len(names), 300, 150)
        assert raw_npz[f"y_{side}"].shape == (len(names), num_classes)

        split = layout.open_split(out / dataset_dir, side)
        assert split.names == names
        assert split.meta["num_classes"] == num_classes and split.meta["max_frames"] == 300
        assert split.meta["class_names"] == list(ntu.CLASS_NAMES[version])
        np.testing.assert_array_equal(split.x, layout.from_mamp_rows(want_rows, 25, 2))
        np.testing.assert_array_equal(split.labels, want_labels)
        frames = [len(ntu.extract_actors(ntu.read_skeleton(source_of(n))).joints) for n in names]
        np.testing.assert_array_equal(split.lengths, frames)


def test_prepare_ntu60(raw_dir, tmp_path):
    missing = tmp_path / "missing.txt"
    missing.write_text("S017C003P020R002A058\n\n")
    out = tmp_path / "out"
    summary = ntu.prepare(raw_dir, out, "ntu60", workers=1, missing_list=missing, progress=False)
    assert summary["samples"] == 6 and summary["raw_files"] == 9
    assert summary["skipped_counts"] == {"missing skeleton": 1, "no body": 1, "not ntu60": 1}
    assert any(s.startswith("S002C001P003R001A010: ") and "no body" in s for s in summary["skipped"])
    assert summary["dropped_empty_frames"] == 2
    subject1, subject20 = list(REAL_NAMES[:2]), list(REAL_NAMES[2:6])  # cameras 1 and 3
    assert summary["benchmarks"] == {"ntu60-xsub": {"train": 2, "test": 4}, "ntu60-xview": {"train": 4, "test": 2}}
    check_outputs(out, "ntu60", "ntu60-xsub", "NTU60_XSub.npz", {"train": subject1, "test": subject20})
    check_outputs(out, "ntu60", "ntu60-xview", "NTU60_XView.npz", {"train": subject20, "test": subject1})
    assert sorted(p.name for p in out.iterdir()) == ["NTU60_XSub.npz", "NTU60_XView.npz", "ntu60-xsub", "ntu60-xview"]


def test_prepare_ntu120_in_worker_processes(raw_dir, tmp_path):
    out = tmp_path / "out"
    summary = ntu.prepare(raw_dir, out, "ntu120", workers=2, progress=False)
    assert summary["samples"] == 8 and summary["skipped_counts"] == {"no body": 1}
    # xsub: subjects 1 and 45 train, 20 test; xset: setup 18 trains, setups 1 and 17 test
    check_outputs(out, "ntu120", "ntu120-xsub", "NTU120_XSub.npz",
                  {"train": list(REAL_NAMES[:2]) + [NTU120_ONLY], "test": list(REAL_NAMES[2:])})
    check_outputs(out, "ntu120", "ntu120-xset", "NTU120_XSet.npz", {"train": [NTU120_ONLY], "test": list(REAL_NAMES)})


def test_prepare_with_an_empty_split(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in REAL_NAMES[:2]:  # subject 1 only: the xsub test split is empty
        shutil.copy(raw_file(name), raw / f"{name}.skeleton")
    ntu.prepare(raw, tmp_path / "out", "ntu60", workers=1, progress=False)
    check_outputs(tmp_path / "out", "ntu60", "ntu60-xsub", "NTU60_XSub.npz",
                  {"train": list(REAL_NAMES[:2]), "test": []})


def test_prepare_bad_file_names_it_and_writes_nothing(raw_dir, tmp_path):
    bad = raw_dir / "part2" / "S001C001P001R001A050.skeleton"
    lines = bad.read_text().split("\n")
    lines[3] = "twenty-five"
    bad.write_text("\n".join(lines))
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"S001C001P001R001A050.skeleton:4: expected the number of joints"):
        ntu.prepare(raw_dir, out, "ntu60", workers=2, progress=False)
    assert list(out.iterdir()) == []


def test_prepare_bad_missing_list(raw_dir, tmp_path):
    missing = tmp_path / "missing.txt"
    missing.write_text("S017C003P020R002A058\nnot a name\n")
    with pytest.raises(InputError, match=r"missing.txt:2: expected an NTU sample name"):
        ntu.prepare(raw_dir, tmp_path / "out", "ntu60", workers=1, missing_list=missing, progress=False)
