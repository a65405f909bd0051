"""PKU-MMD on small hand-built files in the official formats; expected instances derived by hand.

Every present body b in frame f (0-based) of the toy videos has joint j, coordinate c at
    (b + 1) * (f + 1) + 0.1 * j + 0.01 * c
so after centring on joint 1 of body 0 in the instance's first frame every value is a small
hand-computable number.
"""
import numpy as np
import pytest

from igm_fast.data import layout, pku
from igm_fast.data.prepare import main as prepare_main
from igm_fast.io import InputError


def _value(f, b):
    j, c = np.meshgrid(np.arange(25), np.arange(3), indexing="ij")
    return (b + 1) * (f + 1) + 0.1 * j + 0.01 * c  # (25, 3)


def _write_video(path, num_frames, present):
    """present(f) -> bodies present in 0-based frame f."""
    lines = []
    for f in range(num_frames):
        frame = np.zeros((2, 25, 3))
        for b in present(f):
            frame[b] = _value(f, b)
        lines.append(" ".join(f"{v:.4f}" for v in frame.reshape(-1)))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def raw(tmp_path):
    skeletons, labels, splits = (tmp_path / d for d in ("skeletons", "labels", "splits"))
    for d in (skeletons, labels, splits):
        d.mkdir()
    # 0001-L: 12 frames; body 0 in frames 0..9, body 1 in frames 5..11, frame 8 empty
    _write_video(skeletons / "0001-L.txt", 12,
                 lambda f: [] if f == 8 else [b for b, (lo, hi) in enumerate([(0, 9), (5, 11)]) if lo <= f <= hi])
    (labels / "0001-L.txt").write_text("5,2,4,1\n12,7,10,2\n51,11,12,1\n")
    # 0002-M: 5 frames, nobody in frames 0..2, body 0 in frames 3, 4
    _write_video(skeletons / "0002-M.txt", 5, lambda f: [0] if f >= 3 else [])
    (labels / "0002-M.txt").write_text("3,1,3,1\n1,4,5,1\n")
    # 0003-R: listed in the splits, but its files are missing
    (splits / "cross-subject.txt").write_text("Training videos: \n0001-L, 0003-R\nValidataion videos: \n0002-M\n")
    (splits / "cross-view.txt").write_text("Training videos: 0002-M,0003-R\nValidation videos: 0001-L\n")
    return skeletons, labels, splits


def _expected_0001_L():
    """The three instances of 0001-L, by hand: {name: (label, frames (L, 25, 3, 2))}."""
    j = np.arange(25)[:, None] + np.zeros(3)
    off = 0.1 * (j - 1)  # joint j minus the centring joint 1, same coordinate
    inst1 = np.zeros((3, 25, 3, 2))  # frames 2..4 (0-based 1..3), body 0 only; origin frame 1
    for t in range(3):
        inst1[t, :, :, 0] = t + off
    inst2 = np.zeros((3, 25, 3, 2))  # frames 7..10 (0-based 6..9) minus empty frame 8; origin 7.1
    for t, f in enumerate((6, 7, 9)):
        inst2[t, :, :, 0] = f - 6 + off
        inst2[t, :, :, 1] = 2 * f - 5 + off
    inst3 = np.zeros((2, 25, 3, 2))  # frames 11..12 (0-based 10, 11): only body 1, which becomes body 0
    for t in range(2):
        inst3[t, :, :, 0] = 2 * t + off
    return {"0001-L_2_4": (4, inst1), "0001-L_7_10": (11, inst2), "0001-L_11_12": (50, inst3)}


def _check_sample(split, index, label, frames):
    assert split.labels[index] == label and split.lengths[index] == len(frames)
    got = split.x[index]  # (3, 300, 25, 2)
    np.testing.assert_allclose(got[:, :len(frames)], frames.transpose(2, 0, 1, 3), atol=2e-4)
    assert not got[:, len(frames):].any()


def test_prepare_cuts_instances_by_hand(raw, tmp_path):
    summary = pku.prepare(*raw, tmp_path / "out", version="pku1", progress=False)
    assert summary["skipped"] == ["0002-M frames 1..3: no skeleton in any frame", "0003-R: no skeleton file"]
    xsub_train = layout.open_split(tmp_path / "out" / "pku1-xsub", "train")
    xsub_test = layout.open_split(tmp_path / "out" / "pku1-xsub", "test")
    expected = _expected_0001_L()
    assert xsub_train.names == list(expected)
    for i, (label, frames) in enumerate(expected.values()):
        _check_sample(xsub_train, i, label, frames)
    assert xsub_test.names == ["0002-M_4_5"]
    frames = np.zeros((2, 25, 3, 2))
    frames[1, :, :, 0] = 1  # frame 4 minus frame 3 of body 0 (the centring frame)
    frames[0, :, :, 0] = 0.1 * (np.arange(25)[:, None] - 1)
    frames[1, :, :, 0] += 0.1 * (np.arange(25)[:, None] - 1)
    _check_sample(xsub_test, 0, 0, frames)
    # cross-view swaps the roles of the two videos
    xview = {s: layout.open_split(tmp_path / "out" / "pku1-xview", s) for s in layout.SPLITS}
    assert xview["train"].names == ["0002-M_4_5"] and xview["test"].names == list(expected)
    np.testing.assert_array_equal(xview["test"].x, xsub_train.x)
    assert xsub_train.meta["num_classes"] == 51 and xsub_train.meta["class_names"][0] == "bow"
    # the MAMP npz carries the same rows
    npz = layout.read_mamp_npz(summary["pku1-xsub"]["npz"])
    np.testing.assert_array_equal(npz["train"][0], xsub_train.x)
    assert npz["train"][2] == xsub_train.names


def test_cli_pku2(raw, tmp_path, capsys):
    skeletons, labels, splits = raw
    assert prepare_main(["pku2", "--skeletons", str(skeletons), "--labels", str(labels), "--splits", str(splits),
                         "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "pku2-xsub:" in out and "pku2-xview:" in out and "0003-R: no skeleton file" in out
    assert len(layout.open_split(tmp_path / "out" / "pku2-xview", "test")) == 3


def test_split_file_both_spellings_and_lists_on_header_lines(tmp_path):
    path = tmp_path / "cross-view.txt"
    path.write_text("Training videos: a-L, b-M,\nc-R\nValidation videos: d-L, e-M\n")
    assert pku.read_split_file(path) == (["a-L", "b-M", "c-R"], ["d-L", "e-M"])
    path.write_text("Training videos:\na-L\nValidataion videos:\nd-L")
    assert pku.read_split_file(path) == (["a-L"], ["d-L"])


@pytest.mark.parametrize("text,message", [
    ("videos: a, b", "expected a 'Training videos:' list"),
    ("Training videos: a, b\nValidation videos: b, c", r"both training and validation: \['b'\]"),
])
def test_bad_split_file(tmp_path, text, message):
    path = tmp_path / "cross-subject.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        pku.read_split_file(path)
    assert str(path) in str(err.value)


def test_bad_skeleton_file_names_file_and_line(tmp_path):
    path = tmp_path / "0001-L.txt"
    row = " ".join(["0.5"] * 150)
    path.write_text(f"{row}\n{row}\n{' '.join(['0.5'] * 149)}\n")
    with pytest.raises(InputError, match=r"0001-L.txt:3: expected 150 numbers .* found 149"):
        pku.read_skeleton(path)
    path.write_text(f"{row}\n{row.replace('0.5', 'x', 1)}\n")
    with pytest.raises(InputError, match="0001-L.txt:2: non-numeric"):
        pku.read_skeleton(path)
    path.write_text(f"{row}\n{row.replace('0.5', 'nan', 1)}\n")
    with pytest.raises(InputError, match="0001-L.txt:2: non-finite"):
        pku.read_skeleton(path)
    path.write_text(f"{row}\n\n{row}\n")
    with pytest.raises(InputError, match="0001-L.txt:2: expected 150 numbers"):
        pku.read_skeleton(path)
    path.write_text("\n")
    with pytest.raises(InputError, match="0001-L.txt: empty skeleton file"):
        pku.read_skeleton(path)
    path.write_text(f"{row}\n{row}\n\n\n")  # blank lines at the end are fine
    assert pku.read_skeleton(path).shape == (2, 2, 25, 3)


@pytest.mark.parametrize("text,message", [
    ("52,1,2,1\n", r":1: label 52 outside 1..51"),
    ("1,1,2,1\n2,3,20,1\n", r":2: frames 3..20 do not lie within the video's 1..10"),
    ("1,4,2,1\n", r":1: frames 4..2 do not lie"),
    ("1,1,2\n", r":1: expected 'label,start,end,confidence'"),
    ("1,1,2,1\n\nx,1,2,1\n", r":3: expected 'label,start,end,confidence'"),
])
def test_bad_label_file_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "0001-L.txt"
    path.write_text(text)
    with pytest.raises(InputError, match="0001-L.txt" + message):
        pku.read_labels(path, num_frames=10)


def test_label_file_with_spaces(tmp_path):
    path = tmp_path / "0001-L.txt"
    path.write_text("3, 1, 4, 2\n7 5 6 1\n")
    assert pku.read_labels(path, num_frames=6) == [(2, 1, 4), (6, 5, 6)]


def test_missing_split_file_and_unknown_version(raw, tmp_path):
    skeletons, labels, splits = raw
    (splits / "cross-view.txt").unlink()
    with pytest.raises(InputError, match=r"expected one cross\[-_\]view\*.txt split file, found none"):
        pku.prepare(skeletons, labels, splits, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="unknown PKU-MMD version"):
        pku.prepare(skeletons, labels, splits, tmp_path / "out", version="pku3")
