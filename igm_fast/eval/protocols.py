"""Frozen-encoder protocols (KNN, linear probe) and `evaluate`, the entry point the trainer calls.

All numbers are percent and come from the LAST epoch; the linear probe also records its best
epoch on the test set, labelled `best_on_test` (optimistic, shown for comparison with papers
that report it).
"""
import torch

from igm_fast.eval.features import extract_features
from igm_fast.eval.knn import knn_scores
from igm_fast.eval.linear import fit_linear, shuffled
from igm_fast.eval.metrics import accuracy_report, feature_stats, topk_accuracy
from igm_fast.io import InputError

FROZEN_PROTOCOLS = ("knn", "linear")


def check_compatible(encoder, split, what="split"):
    """An encoder only reads skeletons with the joint count it was built for (and a split needs samples)."""
    if len(split) == 0:
        raise InputError(f"the {what} of dataset {split.meta['name']!r} holds no samples")
    have, want = split.meta["num_joints"], encoder.config["num_joints"]
    if have != want:
        raise InputError(f"dataset {split.meta['name']!r} has {have} joints per body but the encoder was "
                         f"built for {want}: evaluate it on a dataset with the same skeleton")


def run_knn(train_feats, train_labels, test_feats, test_labels, num_classes, *, k=20, t=0.07):
    scores = knn_scores(train_feats, train_labels, test_feats, num_classes, k=k, t=t)
    nearest = knn_scores(train_feats, train_labels, test_feats, num_classes, k=1, t=t)
    report = accuracy_report(scores, test_labels, num_classes)
    report["retrieval_top1"] = topk_accuracy(nearest.cpu(), test_labels.cpu(), 1)
    report.update({f"feature_{k}": v for k, v in feature_stats(test_feats).items()})  # collapse check
    return {"report": report, "scores": scores}


def run_linear(encoder, train_split, test_feats, test_labels, num_classes, *, device, batch_size=256,
               epochs=100, lr=0.1, seed=0, aug=True, train_cache=None, stream="joint", readout="pooled",
               train_aug=None, progress=False):
    """Probe trained with crop+rotation augmentation (aug=True, MAMP) or on cached centre-crop
    features (aug=False: `train_cache` = (feats, labels) from extract_features, train=False).
    train_aug: the loader's augmentation keyword arguments (loader.augmentation; None = MAMP's)."""
    if aug:
        def epoch_data(epoch):
            feats, labels, _ = extract_features(encoder, train_split, device=device, batch_size=batch_size,
                                                train=True, epoch=epoch, seed=seed, stream=stream,
                                                readout=readout, aug=train_aug, progress=progress,
                                                desc=f"linear epoch {epoch}")
            return feats, labels
    else:
        epoch_data = shuffled(*train_cache, seed=seed)
    history = []

    def score_epoch(epoch, head):
        with torch.no_grad():
            history.append(topk_accuracy(head(test_feats).cpu(), test_labels.cpu(), 1))

    head = fit_linear(epoch_data, test_feats.shape[1], num_classes, epochs=epochs, lr=lr,
                      batch_size=batch_size, seed=seed, device=device, on_epoch_end=score_epoch)
    with torch.no_grad():
        scores = head(test_feats).softmax(dim=1)
    report = accuracy_report(scores, test_labels, num_classes)
    best = max(range(len(history)), key=history.__getitem__)
    report.update(best_on_test_top1=history[best], best_on_test_epoch=best + 1, history_top1=history)
    return {"report": report, "scores": scores}


def run_frozen(encoder, train_split, test_split, *, protocols=FROZEN_PROTOCOLS, device, batch_size=256,
               knn_k=20, knn_t=0.07, linear_epochs=100, linear_lr=0.1, linear_aug=True, seed=0,
               stream="joint", readout="pooled", train_aug=None, progress=True):
    """{protocol: {"report", "scores"}, "test_labels", "test_indices", "test_feats"}; test rows in split order."""
    unknown = [p for p in protocols if p not in FROZEN_PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown frozen-encoder protocol(s) {unknown}; expected {FROZEN_PROTOCOLS}")
    check_compatible(encoder, train_split, "training split")
    check_compatible(encoder, test_split, "test split")
    num_classes = train_split.meta["num_classes"]
    common = dict(device=device, batch_size=batch_size, seed=seed, stream=stream, readout=readout, progress=progress)
    test_feats, test_labels, test_idx = extract_features(encoder, test_split, desc="test features", **common)
    out = {"test_labels": test_labels, "test_indices": test_idx, "test_feats": test_feats}
    train_cache = None
    if "knn" in protocols or not linear_aug:
        train_cache = extract_features(encoder, train_split, desc="train features", **common)[:2]
    if "knn" in protocols:
        out["knn"] = run_knn(*train_cache, test_feats, test_labels, num_classes, k=knn_k, t=knn_t)
    if "linear" in protocols:
        out["linear"] = run_linear(encoder, train_split, test_feats, test_labels, num_classes,
                                   epochs=linear_epochs, lr=linear_lr, aug=linear_aug,
                                   train_cache=train_cache, train_aug=train_aug, **common)
    return out


def flat_numbers(results):
    """`{protocol}_{metric}` numbers for summaries; per-class lists and histories stay out."""
    out = {}
    for protocol in FROZEN_PROTOCOLS + ("finetune",):
        if protocol in results:
            for key, value in results[protocol]["report"].items():
                if isinstance(value, (int, float)):
                    out[f"{protocol}_{key}"] = value
    return out


def evaluate(encoder, train_split, test_split, *, protocols=FROZEN_PROTOCOLS, device, batch_size=256,
             knn_k=20, knn_t=0.07, linear_epochs=100, linear_lr=0.1, seed=0, progress=True,
             linear_aug=True, stream="joint", readout="pooled", train_aug=None):
    """Contract 4: knn_top1, knn_top5, linear_top1, linear_top5 (percent), plus mean class accuracy,
    k=1 retrieval (`knn_retrieval_top1`) and the labelled best-on-test linear epoch."""
    results = run_frozen(encoder, train_split, test_split, protocols=protocols, device=device,
                         batch_size=batch_size, knn_k=knn_k, knn_t=knn_t, linear_epochs=linear_epochs,
                         linear_lr=linear_lr, linear_aug=linear_aug, seed=seed, stream=stream,
                         readout=readout, train_aug=train_aug, progress=progress)
    return flat_numbers(results)
