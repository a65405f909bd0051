"""`python -m igm_fast.eval` end to end on a tiny synth dataset: outputs, protocols, fusion,
DDP counting, and the clear errors (unknown protocol, joint count, foreign checkpoint)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from igm_fast.data import layout
from igm_fast.data.dataset import generate_synth, load_split
from igm_fast.eval.__main__ import main
from igm_fast.eval.features import extract_features
from igm_fast.eval.protocols import evaluate
from igm_fast.model.encoder import Encoder, save_encoder

TINY = dict(num_joints=25, num_frames=16, t_patch=4, dim=16, depth=2, heads=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = generate_synth(root / "data", samples_per_class=3, num_subjects=4)
    torch.manual_seed(0)
    save_encoder(Encoder(**TINY), root / "encoder.pt")
    return root, data


def run_cli(*args):
    main([str(a) for a in args])


def test_evaluate_contract_keys(tiny):
    root, data = tiny
    enc = Encoder(**TINY)
    out = evaluate(enc, load_split(data, "train"), load_split(data, "test"), device="cpu", batch_size=8,
                   linear_epochs=1, progress=False)
    for key in ("knn_top1", "knn_top5", "linear_top1", "linear_top5", "knn_mean_class", "knn_retrieval_top1"):
        assert 0.0 <= out[key] <= 100.0
    assert out["knn_top1"] <= out["knn_top5"]


def test_knn_linear_run_writes_summary_scores_features(tiny, capsys):
    root, data = tiny
    out = root / "run_kl"
    run_cli("--protocol", "knn,linear", "--encoder", root / "encoder.pt", "--dataset", data, "--out", out,
            "--linear-aug", "off", "--set", "linear_epochs=2", "batch_size=8", "progress=false")
    test = load_split(data, "test")
    summary = json.loads((out / "eval_summary.json").read_text())
    assert summary["protocols"] == ["knn", "linear"] and summary["num_test"] == len(test)
    assert summary["class_names"] == test.meta["class_names"]
    for protocol in ("knn", "linear"):
        rep = summary["results"][protocol]
        assert len(rep["per_class"]) == test.meta["num_classes"] and 0 <= rep["top1"] <= rep["top5"] <= 100
        scores = np.load(out / f"test_scores_{protocol}.npz")
        assert list(scores["names"]) == test.names and np.array_equal(scores["labels"], test.labels)
        np.testing.assert_allclose(scores["scores"].sum(1), 1.0, rtol=1e-5)  # probabilities: fusable
    assert len(summary["results"]["linear"]["history_top1"]) == 2
    feats = np.load(out / "test_features.npz")
    assert feats["features"].shape == (len(test), TINY["dim"])
    printed = capsys.readouterr().out
    assert "| knn |" in printed and "| linear |" in printed and "best epoch on test" in printed


def test_cached_features_are_deterministic(tiny):
    """What makes caching exact with augmentation off: the same features on every pass, and
    (up to rounding) whatever the batch composition."""
    _, data = tiny
    enc = Encoder(**TINY).eval()
    split = load_split(data, "train")
    a, la, ia = extract_features(enc, split, device="cpu", batch_size=8)
    b, _, _ = extract_features(enc, split, device="cpu", batch_size=8)
    c, _, _ = extract_features(enc, split, device="cpu", batch_size=5)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    assert ia.tolist() == list(range(len(split))) and la.tolist() == split.labels.tolist()


def test_semi_finetune_and_fusion(tiny, capsys):
    root, data = tiny
    common = ("--encoder", root / "encoder.pt", "--dataset", data, "--set", "finetune_epochs=1", "head_hidden=32",
              "finetune_batch_size=8", "progress=false")
    run_cli("--protocol", "semi", "--ratio", 0.5, "--out", root / "semi", "--stream", "bone", *common)
    summary = json.loads((root / "semi" / "eval_summary.json").read_text())
    train = load_split(data, "train")
    expect = sum(max(1, round(0.5 * n)) for n in np.bincount(train.labels))
    assert summary["num_labelled"] == expect and summary["config"]["stream"] == "bone"
    assert summary["results"]["semi"]["best_on_test_epoch"] == 1
    run_cli("--protocol", "finetune", "--out", root / "ft", "--init", "random", *common)
    assert json.loads((root / "ft" / "eval_summary.json").read_text())["config"]["init"] == "random"

    run_cli("fuse", root / "semi", root / "ft", "--weights", 0.5, 0.5, "--out", root / "fused")
    fused = np.load(root / "fused" / "test_scores.npz")
    a, b = np.load(root / "semi" / "test_scores.npz"), np.load(root / "ft" / "test_scores.npz")
    np.testing.assert_allclose(fused["scores"], 0.5 * a["scores"] + 0.5 * b["scores"], rtol=1e-5)
    assert "| fused |" in capsys.readouterr().out


def test_semi_needs_ratio(tiny):
    root, data = tiny
    with pytest.raises(SystemExit, match="needs --ratio"):
        run_cli("--protocol", "semi", "--encoder", root / "encoder.pt", "--dataset", data, "--out", root / "x")


def test_unknown_protocol_is_a_clear_error(tiny):
    root, data = tiny
    with pytest.raises(SystemExit, match="unknown protocol 'lineer'; expected one of knn, linear, finetune"):
        run_cli("--protocol", "lineer", "--encoder", root / "encoder.pt", "--dataset", data, "--out", root / "x")
    with pytest.raises(SystemExit, match="run alone"):
        run_cli("--protocol", "knn,finetune", "--encoder", root / "encoder.pt", "--dataset", data, "--out", root / "x")


@pytest.mark.parametrize("protocol", ["knn", "transfer"])
def test_joint_count_mismatch_is_a_clear_error(tiny, tmp_path, protocol):
    root, _ = tiny
    ucla_like = tmp_path / "ucla_like"
    for split in ("train", "test"):  # a 20-joint dataset (NW-UCLA's skeleton)
        layout.write_split(ucla_like, split, np.ones((2, 3, 16, 20, 1), np.float32), [16, 16], [0, 1], ["a", "b"])
    layout.write_meta(ucla_like, "ucla_like", 2, 20, 1, 16, ["x", "y"])
    with pytest.raises(SystemExit, match="has 20 joints per body but the encoder was built for 25"):
        run_cli("--protocol", protocol, "--encoder", root / "encoder.pt", "--dataset", ucla_like,
                "--out", tmp_path / "o")


def test_checkpoint_of_another_architecture_is_a_clear_error(tiny, tmp_path):
    root, data = tiny
    wrong = torch.load(root / "encoder.pt", weights_only=True)
    wrong["config"] = {**wrong["config"], "dim": 32, "heads": 4}  # weights are dim 16
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(SystemExit, match="wrong.pt: weights do not match the encoder architecture"):
        run_cli("--protocol", "knn", "--encoder", tmp_path / "wrong.pt", "--dataset", data, "--out", tmp_path / "o")
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "foreign.pt")
    with pytest.raises(SystemExit, match="foreign.pt: neither an igm_fast encoder"):
        run_cli("--protocol", "knn", "--encoder", tmp_path / "foreign.pt", "--dataset", data, "--out", tmp_path / "o")


DDP_SCRIPT = """
import json, sys, torch
from igm_fast import dist
from igm_fast.data.dataset import load_split
from igm_fast.eval.features import extract_features
from igm_fast.eval.protocols import evaluate
from igm_fast.model.encoder import load_encoder
dist.setup("cpu")
enc, data = load_encoder(sys.argv[1]), sys.argv[2]
test = load_split(data, "test")
feats, labels, idx = extract_features(enc, test, device="cpu", batch_size=4)
res = evaluate(enc, load_split(data, "train"), test, protocols=("knn",), device="cpu", batch_size=4, progress=False)
if dist.is_main():
    print(json.dumps({"idx": idx.tolist(), "feats": feats.tolist(), "res": res}))
dist.cleanup()
"""


def test_ddp_eval_counts_every_test_sample_once(tiny, tmp_path):
    root, data = tiny
    script = tmp_path / "ddp_eval.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(root / "encoder.pt"), str(data)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    test = load_split(data, "test")
    assert got["idx"] == list(range(len(test)))  # each sample once, none padded or duplicated
    enc = Encoder(**TINY)
    enc.load_state_dict(torch.load(root / "encoder.pt", weights_only=True)["state_dict"])
    single, _, _ = extract_features(enc, test, device="cpu", batch_size=4)
    torch.testing.assert_close(torch.tensor(got["feats"]), single, rtol=1e-5, atol=1e-6)
    ref = evaluate(enc, load_split(data, "train"), test, protocols=("knn",), device="cpu", batch_size=4, progress=False)
    assert got["res"] == pytest.approx(ref)
