"""Frozen-encoder features of a whole split, computed batch by batch through SkeletonLoader.

Features = `encoder.features(x, readout)` (pooled: mean over bodies, time and joints; joints: joints
kept apart), no masking, eval mode, no grad. Training-split features for the augmented linear
probe take the loader's augmentation keyword arguments (`aug`, see loader.augmentation).
Under DDP each rank encodes its own shard and the shards are gathered, so every rank ends up
with every sample's feature exactly once.

When caching is exact: with augmentation off (`train=False`: centre crop 0.95, no rotation) the
input of sample i is a fixed function of the sample, so its feature depends only on (encoder
weights, sample, out_frames, stream). Computing the features once and reusing them for every KNN
query and every linear-probe epoch is then the same computation as recomputing them each time,
up to float rounding that depends on which samples share a batch (~1e-6 relative; none when the
batch size and rank count are unchanged). With augmentation on every epoch sees new crops and
rotations, so nothing may be cached.
"""
import torch
from tqdm import tqdm

from igm_fast import dist
from igm_fast.data.loader import SkeletonLoader
from igm_fast.data.skeletons import to_stream


@torch.no_grad()
def extract_features(encoder, split, *, device, batch_size=256, train=False, epoch=0, seed=0,
                     stream="joint", readout="pooled", aug=None, progress=False, desc="features"):
    """(feats (N, D) float32, labels (N,), indices (N,)) on `device`, gathered over ranks.

    train=False: rows sorted by sample index, i.e. aligned with `split.names`.
    train=True: the loader's (augmented, shuffled) order for `epoch`.
    """
    was_training = encoder.training
    encoder.eval()
    loader = SkeletonLoader(split, batch_size, train=train, device=device, drop_last=False,
                            out_frames=encoder.config["num_frames"], seed=seed,
                            rank=dist.rank(), world_size=dist.world_size(), **(aug or {}))
    loader.set_epoch(epoch)
    feats, labels, indices = [], [], []
    for x, y, idx in tqdm(loader, desc=desc, disable=not (progress and dist.is_main()), leave=False):
        feats.append(encoder.features(to_stream(x, stream), readout).float())
        labels.append(y)
        indices.append(idx.to(device))
    encoder.train(was_training)
    feats = cat_gather(feats, torch.zeros(0, encoder.feature_dim(readout), device=device))
    labels, indices = (cat_gather(t, torch.zeros(0, dtype=torch.long, device=device)) for t in (labels, indices))
    if not train:
        order = indices.argsort()
        feats, labels, indices = feats[order], labels[order], indices[order]
    return feats, labels, indices


def cat_gather(chunks, empty):
    """Concatenate this rank's batches, then every rank's rows (a rank may have none)."""
    return dist.all_gather_cat(torch.cat(chunks) if chunks else empty)
