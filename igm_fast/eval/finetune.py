"""End-to-end finetuning (MAMP): encoder + MLP head, AdamW with layer-wise lr decay, drop path,
label smoothing, per-iteration linear warmup then cosine decay. Also the engine of the semi-
supervised and transfer protocols, which only change the training split.
"""

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from igm_fast import dist
from igm_fast.data.loader import SkeletonLoader
from igm_fast.data.skeletons import to_stream
from igm_fast.eval.features import cat_gather
from igm_fast.eval.metrics import accuracy_report, topk_accuracy
from igm_fast.lr_schedule import warmup_cosine


HEADS = ("mlp", "mamp")


class Classifier(nn.Module):
    """encoder.features(readout) -> a head:
    mlp:  Linear(F, hidden) -> GELU -> Dropout -> Linear(hidden, C)
    mamp: Dropout -> Linear(F, hidden) -> BatchNorm -> ReLU -> Linear(hidden, C) (MAMP's, on the joints readout)."""

    def __init__(self, encoder, num_classes, hidden=2048, dropout=0.0, stream="joint", readout="pooled", head="mlp"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head={head!r}; expected one of {HEADS}")
        self.encoder, self.stream, self.readout = encoder, stream, readout
        dim = encoder.feature_dim(readout)
        if head == "mlp":
            self.head = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, num_classes))
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                      nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.encoder.features(to_stream(x, self.stream), self.readout))


def layer_id(encoder, param_name):
    """0 = embeddings, i+1 = encoder.blocks[i], depth+1 = the final norm (and the head, outside the encoder)."""
    top = param_name.split(".")[0]
    if top == "blocks":
        return int(param_name.split(".")[1]) + 1
    if isinstance(getattr(encoder, top), nn.LayerNorm):
        return len(encoder.blocks) + 1
    return 0


def param_groups(model, weight_decay, layer_decay):
    """MAE `param_groups_lrd`: lr scale layer_decay ** (depth + 1 - layer); no decay on biases,
    norms and position embeddings (every parameter with fewer than 2 dims, plus *_pos)."""
    depth = len(model.encoder.blocks)
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = layer_id(model.encoder, name[len("encoder."):]) if name.startswith("encoder.") else depth + 1
        no_decay = p.ndim < 2 or name.endswith("_pos")
        key = (layer, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": 0.0 if no_decay else weight_decay,
                           "lr_scale": layer_decay ** (depth + 1 - layer)}
        groups[key]["params"].append(p)
    return list(groups.values())


@torch.no_grad()
def predict(model, split, *, device, batch_size, seed=0):
    """Class probabilities (N, C) and labels in split order, each test sample counted once over ranks."""
    device = torch.device(device)
    model.eval()
    loader = SkeletonLoader(split, batch_size, train=False, device=device,
                            out_frames=model.encoder.config["num_frames"], seed=seed,
                            rank=dist.rank(), world_size=dist.world_size())
    probs, labels, indices = [], [], []
    for x, y, idx in loader:
        probs.append(model(x).float().softmax(dim=1))
        labels.append(y)
        indices.append(idx.to(device))
    num_classes = model.head[-1].out_features
    probs = cat_gather(probs, torch.zeros(0, num_classes, device=device))
    labels, indices = (cat_gather(t, torch.zeros(0, dtype=torch.long, device=device)) for t in (labels, indices))
    order = indices.argsort()
    return probs[order], labels[order]


def finetune(encoder, train_split, test_split, *, device, epochs=100, batch_size=48, lr=3e-4, min_lr=1e-5,
             warmup_epochs=5, weight_decay=0.05, layer_decay=0.8, label_smoothing=0.1, head_hidden=2048,
             head_dropout=0.0, stream="joint", readout="pooled", head="mlp", aug=None, seed=0, progress=True):
    """Train encoder + head; returns {"report", "scores"} of the LAST epoch (best-on-test labelled as such).

    Build the encoder with drop_path (e.g. load_encoder(path, drop_path=0.3)) before calling.
    aug: the training loader's augmentation keyword arguments (loader.augmentation; None = MAMP's).
    """
    device = torch.device(device)
    torch.manual_seed(seed)  # the head's init: identical on every rank
    num_classes = train_split.meta["num_classes"]
    # The encoder's timestep embedding only serves IGM's re-encoding of x0_hat: unused here, and
    # a parameter without gradient would stall DDP's reducer.
    if hasattr(encoder, "t_embedder"):
        encoder.t_embedder.requires_grad_(False)
    model = Classifier(encoder, num_classes, head_hidden, head_dropout, stream, readout, head).to(device)
    train_model = model
    if dist.is_distributed():
        device_ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    opt = torch.optim.AdamW(param_groups(model, weight_decay, layer_decay), lr=lr, betas=(0.9, 0.999))
    # drop_last=False: a small labelled subset (semi 1%) may hold fewer samples than one batch.
    loader = SkeletonLoader(train_split, batch_size, train=True, device=device, drop_last=False,
                            out_frames=encoder.config["num_frames"], seed=seed,
                            rank=dist.rank(), world_size=dist.world_size(), **(aug or {}))
    steps_per_epoch, history = len(loader), []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        train_model.train()
        bar = tqdm(loader, desc=f"finetune epoch {epoch + 1}/{epochs}", leave=False,
                   disable=not (progress and dist.is_main()))
        for i, (x, y, _) in enumerate(bar):
            if len(y) < 2:  # a trailing batch of one: BatchNorm cannot train on it
                continue
            step_lr = lr * warmup_cosine(epoch * steps_per_epoch + i, warmup_epochs * steps_per_epoch,
                                         epochs * steps_per_epoch, min_lr / lr)
            for group in opt.param_groups:
                group["lr"] = step_lr * group["lr_scale"]
            loss = F.cross_entropy(train_model(x), y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        probs, labels = predict(model, test_split, device=device, batch_size=batch_size, seed=seed)
        history.append(topk_accuracy(probs.cpu(), labels.cpu(), 1))
    report = accuracy_report(probs, labels, num_classes)
    best = max(range(epochs), key=history.__getitem__)
    report.update(best_on_test_top1=history[best], best_on_test_epoch=best + 1, history_top1=history)
    return {"report": report, "scores": probs, "labels": labels}
