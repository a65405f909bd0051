"""Linear probe (MAMP): BatchNorm1d(affine=False) + Linear on frozen features.

SGD (lr 0.1, momentum 0.9, weight decay 0), batch 256; the lr decays per iteration on a half
cosine to 0 (the shape of MAE's `adjust_learning_rate`; no warmup: our choice). The encoder is
frozen, so training the head on an epoch's features computed first is the same as interleaving
encoder and head batch by batch.
"""
import math

import torch
from torch import nn


def linear_probe(dim, num_classes):
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), nn.Linear(dim, num_classes))


def fit_linear(epoch_data, dim, num_classes, *, epochs, lr=0.1, momentum=0.9, weight_decay=0.0,
               batch_size=256, seed=0, device="cpu", on_epoch_end=None):
    """Train a probe; `epoch_data(epoch) -> (feats (N, D), labels (N,))` in that epoch's training order.

    `on_epoch_end(epoch, head)` lets the caller score the head after every epoch (history only:
    the reported result is the last epoch). The head's init depends only on `seed`, so every DDP
    rank that sees the same gathered features trains the identical head.
    """
    gen = torch.Generator().manual_seed(seed)
    head = linear_probe(dim, num_classes)
    nn.init.trunc_normal_(head[1].weight, std=0.01, generator=gen)  # MAE/MAMP probe init
    nn.init.zeros_(head[1].bias)
    head = head.to(device)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        feats, labels = epoch_data(epoch)
        feats, labels = feats.to(device), labels.to(device)
        steps = math.ceil(len(labels) / batch_size)
        head.train()
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * (epoch + step / steps) / epochs))
            sl = slice(step * batch_size, (step + 1) * batch_size)
            if labels[sl].numel() < 2:  # BatchNorm cannot train on a batch of one
                continue
            loss = loss_fn(head(feats[sl]), labels[sl])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        head.eval()
        if on_epoch_end is not None:
            on_epoch_end(epoch, head)
    return head


def shuffled(feats, labels, seed):
    """Per-epoch data for cached features: a fresh permutation keyed by (seed, epoch)."""
    def epoch_data(epoch):
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        return feats[perm], labels[perm]
    return epoch_data
