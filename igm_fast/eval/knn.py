"""Weighted KNN classifier on frozen features (InstDisc / MoCo protocol).

Cosine similarity between L2-normalised features; each of the k nearest training samples votes
for its class with weight exp(sim / t). k=1 is nearest-neighbour "action retrieval".
"""
import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_scores(train_feats, train_labels, test_feats, num_classes, k=20, t=0.07, chunk=1024):
    """Class votes (N_test, C), normalised to sum to 1 per sample."""
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float(), dim=1)
    k = min(k, train.shape[0])
    out = []
    for start in range(0, test.shape[0], chunk):  # bounded memory: never the whole N_test x N_train matrix
        sim, idx = (test[start:start + chunk] @ train.T).topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device, dtype=sim.dtype)
        votes.scatter_add_(1, train_labels[idx], (sim / t).exp())
        out.append(votes / votes.sum(dim=1, keepdim=True))
    return torch.cat(out)
