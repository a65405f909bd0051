"""Every picture command writes a non-empty, valid image on a tiny run; bad inputs are named."""
import json
import math

import numpy as np
import pytest
import yaml
from PIL import Image

from igm_fast.data.dataset import generate_synth
from igm_fast.io import InputError, atomic_torch_save
from igm_fast.model.encoder import Encoder, save_encoder
from igm_fast.viz.__main__ import main
from igm_fast.viz.confusion import confusion_matrix
from igm_fast.viz.curves import plot_curves

CLASS_NAMES = ["wave", "clap", "kick"]


def check_image(path, fmt, min_frames=1):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == fmt and im.width > 100 and im.height > 100
        assert getattr(im, "n_frames", 1) >= min_frames
        im.seek(0)
        assert np.asarray(im.convert("L")).std() > 0  # something was drawn


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz")
    generate_synth(root, samples_per_class=3, num_subjects=4)
    return root


def write_metrics(run):
    run.mkdir(parents=True, exist_ok=True)
    lines = [dict(kind="train", step=s, epoch=s // 10, loss=2 * math.exp(-s / 20), loss_gen=math.exp(-s / 20),
                  loss_feat=0.5, loss_dist=0.1, lr=1e-3 * min(1, s / 5), samples_per_s=100.0) for s in range(30)]
    lines += [dict(kind="eval", step=s, epoch=s // 10, knn_top1=20.0 + s) for s in (10, 20, 29)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_curves(tmp_path, capsys):
    write_metrics(tmp_path)
    main(["curves", str(tmp_path)])
    check_image(tmp_path / "curves.png", "PNG")
    assert "curves.png" in capsys.readouterr().out


def test_curves_bad_line_names_file_and_line(tmp_path):
    write_metrics(tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 3\n')
    with pytest.raises(InputError, match=r"metrics.jsonl:34: invalid JSON"):
        plot_curves(tmp_path)


def eval_run(run, n=60, classes=3):
    """A hand-built eval run: what `python -m igm_fast.eval --out` writes."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    feats = rng.normal(size=(n, 8)) + 4 * np.eye(classes, 8)[labels]
    scores = rng.random((n, classes)) + np.eye(classes)[labels]
    run.mkdir(parents=True, exist_ok=True)
    names = np.array([f"s{i}" for i in range(n)])
    np.savez(run / "test_features.npz", names=names, features=feats.astype(np.float32), labels=labels)
    np.savez(run / "test_scores.npz", names=names, scores=scores.astype(np.float32), labels=labels)
    (run / "eval_summary.json").write_text(json.dumps({"class_names": CLASS_NAMES}))


def test_tsne_and_confusion_on_an_eval_run(tmp_path):
    eval_run(tmp_path)
    main(["tsne", str(tmp_path)])
    check_image(tmp_path / "tsne.png", "PNG")
    main(["confusion", str(tmp_path)])
    check_image(tmp_path / "confusion.png", "PNG")


def test_confusion_matrix_by_hand():
    m = confusion_matrix(np.array([0, 1, 1, 2, 0]), np.array([0, 0, 1, 1, 1]), 3)
    np.testing.assert_allclose(m, [[0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3], [0, 0, 0]])


def test_tsne_on_a_training_run_evaluates_knn_first(tmp_path, synth_root):
    run = tmp_path / "train_run"
    run.mkdir()
    save_encoder(Encoder(num_joints=25, num_frames=16, dim=16, depth=1, heads=2), run / "encoder.pt")
    (run / "config.yaml").write_text(yaml.safe_dump({"dataset": "synth", "data_root": str(synth_root)}))
    main(["tsne", str(run)])
    check_image(run / "tsne.png", "PNG")
    assert (run / "eval_knn" / "test_features.npz").is_file()


def test_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="neither an eval run"):
        main(["confusion", str(tmp_path)])


def test_skeleton_gif_25_joints_two_bodies(tmp_path, synth_root):
    out = tmp_path / "s.gif"
    main(["skeleton", "synth:train:0", "--data-root", str(synth_root), "--out", str(out)])
    check_image(out, "GIF", min_frames=2)


def test_skeleton_gif_20_joints_from_npy(tmp_path):
    t = np.linspace(0, 2 * np.pi, 40)
    sample = np.random.default_rng(0).normal(size=(40, 20, 3)).astype(np.float32) * 0.1
    sample[:, 7, 0] += np.sin(t)  # a waving left hand
    np.save(tmp_path / "ucla_sample.npy", sample)
    out = tmp_path / "u.gif"
    main(["skeleton", str(tmp_path / "ucla_sample.npy"), "--out", str(out)])
    check_image(out, "GIF", min_frames=2)
    with pytest.raises(SystemExit, match="expected DATASET:INDEX"):
        main(["skeleton", "synth"])


def test_denoise(tmp_path, synth_root):
    from igm_fast.train import DEFAULTS, build_model

    cfg = {**DEFAULTS, "dataset": "synth", "data_root": str(synth_root), "out_frames": 16, "dim": 16, "depth": 1,
           "heads": 2, "gen_depth": 1, "kernels": "eager"}
    model = build_model(cfg, {"num_joints": 25, "input_mean": [0.1, -0.2, 0.0], "input_std": [0.5, 0.4, 0.3]})
    atomic_torch_save({"config": cfg, "model": model.state_dict(), "encoder_config": model.encoder.config},
                      tmp_path / "checkpoint_last.pt")
    main(["denoise", str(tmp_path), "--t", "100", "--index", "1"])
    check_image(tmp_path / "denoise.png", "PNG")
    with pytest.raises(SystemExit, match="t=5000 outside"):
        main(["denoise", str(tmp_path), "--t", "5000"])


def test_skeleton_gif_from_raw_files(tmp_path):
    from conftest import shared_path

    ucla = shared_path("nw_ucla", "all_sqe", "a01_s01_e00_v01.json")
    main(["skeleton", str(ucla), "--out", str(tmp_path / "ucla.gif")])
    check_image(tmp_path / "ucla.gif", "GIF", min_frames=2)
    ntu = shared_path("ntu_raw_samples", "S001C001P001R001A050.skeleton")
    main(["skeleton", str(ntu), "--out", str(tmp_path / "ntu.gif")])
    check_image(tmp_path / "ntu.gif", "GIF", min_frames=2)
