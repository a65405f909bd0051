"""Accuracy numbers every protocol reports, from class scores (N, C) and labels (N,), and the
feature statistics that show a collapsed encoder."""
import torch


def topk_accuracy(scores, labels, k):
    """Percent of samples whose label is among the k highest scores (k clipped to the class count)."""
    k = min(k, scores.shape[1])
    hit = (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return 100.0 * hit.float().mean().item()


def per_class_accuracy(pred, labels, num_classes):
    """Top-1 percent per class; NaN for a class with no sample (excluded from the mean)."""
    correct = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, (pred == labels).double())
    count = torch.bincount(labels, minlength=num_classes).double()
    return 100.0 * correct / count


def accuracy_report(scores, labels, num_classes):
    """top1, top5, per-class accuracy and their mean over the classes present in `labels`."""
    scores, labels = scores.float().cpu(), labels.long().cpu()
    per_class = per_class_accuracy(scores.argmax(dim=1), labels, num_classes)
    present = ~per_class.isnan()
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class": per_class[present].mean().item(),
        "per_class": [None if v != v else round(v, 4) for v in per_class.tolist()],
    }


def feature_stats(feats):
    """How spread the features (N, D) are: `effective_rank` = exp(entropy of the normalised singular
    values of the centred features) (Roy & Vetterli; 1 = all on a line, D = isotropic), and
    `mean_cos` = mean cosine similarity of distinct samples (1 = collapsed to one direction)."""
    f = feats.double().cpu()
    s = torch.linalg.svdvals(f - f.mean(dim=0))
    p = s / s.sum().clamp_min(1e-300)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    u = torch.nn.functional.normalize(f, dim=1)
    n = len(u)
    cos_sum = (u.sum(dim=0) ** 2).sum() - n  # sum over i != j of u_i . u_j
    return {"effective_rank": entropy.exp().item(), "mean_cos": (cos_sum / max(1, n * (n - 1))).item()}
