"""Evaluation protocols on hand-built inputs: KNN votes, linear separability, semi subsets,
score fusion, layer decay, streams, accuracy bookkeeping."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from igm_fast.data.skeletons import NTU25, UCLA20, to_stream
from igm_fast.eval.finetune import Classifier, param_groups
from igm_fast.eval.fusion import fuse, write_scores
from igm_fast.eval.knn import knn_scores
from igm_fast.eval.linear import fit_linear, shuffled
from igm_fast.eval.metrics import accuracy_report, feature_stats
from igm_fast.eval.semi import labelled_subset
from igm_fast.io import InputError
from igm_fast.model.encoder import Encoder


def test_knn_weighted_votes_by_hand():
    train = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]])  # norms differ: cosine ignores them
    labels = torch.tensor([0, 1, 1, 2])
    test = torch.tensor([[1.0, 0.2]])
    # cosine similarities to the test point, by hand: 1/sqrt(1.04), 0.2/sqrt(1.04), 1.2/sqrt(2.08), -1/sqrt(1.04)
    s0, s1, s2 = 1 / math.sqrt(1.04), 0.2 / math.sqrt(1.04), 1.2 / math.sqrt(2.08)
    t = 0.5
    # k=2: neighbours are sample 0 (class 0) and sample 2 (class 1)
    v0, v1 = math.exp(s0 / t), math.exp(s2 / t)
    scores = knn_scores(train, labels, test, num_classes=3, k=2, t=t)
    torch.testing.assert_close(scores.double(), torch.tensor([[v0, v1, 0.0]], dtype=torch.float64) / (v0 + v1))
    # k=3 adds sample 1 (class 1)
    v1b = math.exp(s2 / t) + math.exp(s1 / t)
    scores = knn_scores(train, labels, test, num_classes=3, k=3, t=t)
    torch.testing.assert_close(scores.double(), torch.tensor([[v0, v1b, 0.0]], dtype=torch.float64) / (v0 + v1b))
    # k=1 is nearest-neighbour retrieval; k larger than the training set is clipped
    assert knn_scores(train, labels, test, 3, k=1).tolist() == [[1.0, 0.0, 0.0]]
    assert knn_scores(train, labels, test, 3, k=10, t=t).shape == (1, 3)


def test_knn_chunking_matches_one_shot():
    g = torch.Generator().manual_seed(1)
    train, test = torch.randn(50, 8, generator=g), torch.randn(13, 8, generator=g)
    labels = torch.randint(0, 4, (50,), generator=g)
    one_shot = knn_scores(train, labels, test, 4, k=5)
    torch.testing.assert_close(knn_scores(train, labels, test, 4, k=5, chunk=3), one_shot)


def separable_features(n, dim, classes, seed):
    """Gaussian clusters around well-separated class centres: linearly separable with a wide margin."""
    g = torch.Generator().manual_seed(seed)
    centres = 6.0 * torch.eye(classes, dim)
    labels = torch.randint(0, classes, (n,), generator=g)
    return centres[labels] + 0.5 * torch.randn(n, dim, generator=g) + 3.0, labels  # offset: BN must centre it


def test_linear_probe_reaches_100_percent_on_linear_structure():
    x_train, y_train = separable_features(600, 32, 6, seed=0)
    x_test, y_test = separable_features(300, 32, 6, seed=1)
    seen = []
    head = fit_linear(shuffled(x_train, y_train, seed=0), 32, 6, epochs=10, lr=0.1, batch_size=64,
                      on_epoch_end=lambda e, h: seen.append(e))
    with torch.no_grad():
        report = accuracy_report(head(x_test), y_test, 6)
    assert report["top1"] == 100.0 and report["mean_class"] == 100.0
    assert seen == list(range(10))
    assert not head[0].affine  # MAMP: BatchNorm1d(affine=False) + Linear


def test_linear_probe_is_seeded():
    x, y = separable_features(200, 8, 3, seed=2)
    a = fit_linear(shuffled(x, y, seed=3), 8, 3, epochs=2, seed=3)
    b = fit_linear(shuffled(x, y, seed=3), 8, 3, epochs=2, seed=3)
    torch.testing.assert_close(a[1].weight, b[1].weight, rtol=0, atol=0)


def test_accuracy_report_by_hand():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.7, 0.2]])
    labels = torch.tensor([0, 1, 1, 1])  # sample 2 wrong; class 2 has no sample
    rep = accuracy_report(scores, labels, 3)
    assert rep["top1"] == 75.0 and rep["top5"] == 100.0
    assert rep["per_class"][:2] == [100.0, pytest.approx(200 / 3, abs=1e-3)] and rep["per_class"][2] is None
    assert rep["mean_class"] == pytest.approx((100 + 200 / 3) / 2)


def test_feature_stats_by_hand():
    # centred features along r orthogonal axes with equal spread: r equal singular values -> rank r
    eye = torch.eye(4)
    spread = torch.cat([eye[:3], -eye[:3]])  # +-e1, +-e2, +-e3
    stats = feature_stats(spread)
    assert stats["effective_rank"] == pytest.approx(3.0)
    # cosines: each vector has one opposite (-1) and four orthogonal (0) partners -> mean -1/5
    assert stats["mean_cos"] == pytest.approx(-1 / 5)
    # collapse: one direction (different lengths) -> rank 1, cosine 1
    line = torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    assert feature_stats(line) == {"effective_rank": pytest.approx(1.0), "mean_cos": pytest.approx(1.0)}


def test_semi_subset_is_class_balanced_and_seeded():
    labels = np.repeat(np.arange(5), [100, 200, 50, 10, 300])
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]
    idx = labelled_subset(labels, 0.1, seed=7)
    assert np.array_equal(np.bincount(labels[idx]), [10, 20, 5, 1, 30])
    assert len(set(idx)) == len(idx) and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, labelled_subset(labels, 0.1, seed=7))
    assert not np.array_equal(idx, labelled_subset(labels, 0.1, seed=8))
    assert np.array_equal(np.bincount(labels[labelled_subset(labels, 0.01, seed=0)]), [1, 2, 1, 1, 3])
    with pytest.raises(ValueError):
        labelled_subset(labels, 0.0)


def test_semi_subset_identical_across_ranks():
    """Two processes with different ranks and different global RNG states pick the same subset."""
    code = ("import numpy as np, torch, os; np.random.seed(int(os.environ['RANK'])); "
            "torch.manual_seed(int(os.environ['RANK'])); from igm_fast.eval.semi import labelled_subset; "
            "print(labelled_subset(np.arange(1000) % 7, 0.1, seed=5).tolist())")
    outs = [subprocess.run([sys.executable, "-c", code], env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2"},
                           capture_output=True, text=True, check=True).stdout for r in (0, 1)]
    assert outs[0] == outs[1] and len(json.loads(outs[0])) == 7 * 14  # 143 or 142 per class -> 14 each


def test_fusion_aligns_by_name(tmp_path):
    names = [f"s{i}" for i in range(6)]
    labels = np.array([0, 1, 2, 0, 1, 2])
    rng = np.random.default_rng(0)
    a, b = rng.random((6, 3)), rng.random((6, 3))
    perm = np.array([3, 0, 5, 1, 4, 2])
    write_scores(tmp_path / "a.npz", names, a, labels)
    write_scores(tmp_path / "b.npz", [names[i] for i in perm], b[perm], labels[perm])
    fused_names, fused, fused_labels = fuse([tmp_path / "a.npz", tmp_path / "b.npz"], [0.3, 0.7])
    assert fused_names == names and np.array_equal(fused_labels, labels)
    np.testing.assert_allclose(fused, 0.3 * a + 0.7 * b, rtol=1e-6)

    write_scores(tmp_path / "c.npz", names[:5] + ["other"], b, labels)
    with pytest.raises(InputError, match="c.npz: holds different samples"):
        fuse([tmp_path / "a.npz", tmp_path / "c.npz"])
    write_scores(tmp_path / "d.npz", names, b, (labels + 1) % 3)
    with pytest.raises(InputError, match="d.npz: labels disagree"):
        fuse([tmp_path / "a.npz", tmp_path / "d.npz"])
    with pytest.raises(ValueError, match="weights"):
        fuse([tmp_path / "a.npz", tmp_path / "b.npz"], [1.0])
    (tmp_path / "e.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="e.npz"):
        fuse([tmp_path / "e.npz"])


def test_bone_and_motion_streams_by_hand():
    x = torch.randn(2, 3, 5, 25, 2, dtype=torch.float64)
    bone = to_stream(x, "bone")
    # CTR-GCN NTU pairs (1-based): (24, 25) tip of right hand - right thumb; (1, 2); 21 is the root
    torch.testing.assert_close(bone[:, :, :, 23], x[:, :, :, 23] - x[:, :, :, 24])
    torch.testing.assert_close(bone[:, :, :, 0], x[:, :, :, 0] - x[:, :, :, 1])
    assert bone[:, :, :, 20].abs().max() == 0
    ucla = torch.randn(1, 3, 4, 20, 1, dtype=torch.float64)
    ubone = to_stream(ucla, "bone")
    torch.testing.assert_close(ubone[:, :, :, 3], ucla[:, :, :, 3] - ucla[:, :, :, 2])  # head - shoulder centre
    assert ubone[:, :, :, 2].abs().max() == 0
    motion = to_stream(x, "motion")
    torch.testing.assert_close(motion[:, :, 1], x[:, :, 2] - x[:, :, 1])
    assert motion[:, :, -1].abs().max() == 0
    assert to_stream(x, "joint") is x
    with pytest.raises(ValueError, match="unknown stream"):
        to_stream(x, "velocity")


def test_skeleton_layouts_are_trees():
    for skel, root in ((NTU25, 20), (UCLA20, 2)):
        assert len(skel.bones) == skel.num_joints - 1
        for v in range(skel.num_joints):  # every joint reaches the root without a cycle
            seen = set()
            while skel.parents[v] != v:
                assert v not in seen
                seen.add(v)
                v = skel.parents[v]
            assert v == root


def test_layer_decay_groups():
    encoder = Encoder(num_joints=5, num_frames=8, t_patch=4, dim=16, depth=3, heads=2, drop_path=0.3)
    model = Classifier(encoder, num_classes=4, hidden=32)
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.8)
    where = {id(p): g for g in groups for p in g["params"]}
    assert where[id(encoder.tokenizer.patch_embed.weight)]["lr_scale"] == pytest.approx(0.8 ** 4)
    assert where[id(encoder.blocks[1].attn.qkv.weight)]["lr_scale"] == pytest.approx(0.8 ** 2)
    assert where[id(encoder.blocks[2].mlp.fc1.weight)]["lr_scale"] == pytest.approx(0.8)
    assert where[id(encoder.norm.weight)]["lr_scale"] == 1.0
    assert where[id(model.head[0].weight)]["lr_scale"] == 1.0
    assert where[id(model.head[0].weight)]["weight_decay"] == 0.05
    tok = encoder.tokenizer
    for p in (encoder.blocks[0].attn.qkv.bias, encoder.norm.weight, tok.time_pos, tok.joint_pos):
        assert where[id(p)]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())
