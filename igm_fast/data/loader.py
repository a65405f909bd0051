"""Batches of augmented skeletons on the training device, one augmentation op call per batch.

    loader = SkeletonLoader(split, 256, train=True, device="cuda", rank=r, world_size=w)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, labels, indices in loader:   # x (B, 3, 120, V, M) float32 and labels on device,
            ...                             # indices (global sample ids) on the CPU

Raw padded sequences are gathered from the split's memory map (sorted indices, only the
frames up to the batch's longest valid length) by a background thread into pinned memory,
copied without blocking, then cropped / resized / rotated on the device by igm_fast.augment.
With `data_on_device` the whole split lives in device memory and batches are gathered there.
Augmentation parameters are keyed by (seed, epoch, global sample index): a sample's
augmentation does not depend on the batch size, the rank count or the order.

Index sets per rank: train shuffles by (seed, epoch), drops the tail so every rank gets the
same number of samples, and drops the last incomplete batch; eval visits every sample exactly
once across ranks (strided, so ranks may differ by one sample), in order.
"""
import queue
import threading

import numpy as np
import torch

from igm_fast import augment

DATA_ON_DEVICE = ("auto", "on", "off")
# Training-time augmentation as config keys (pretraining and every downstream protocol), MAMP's
# values: crop ratio U(aug_p_min, 1) with at least aug_min_crop frames, rotation U(-aug_theta,
# aug_theta) rad per axis; aug_scale s: every sample scaled by U(1 - s, 1 + s) (0 = off);
# aug_noise: Gaussian joint noise std in dataset units (0 = off).
AUG_DEFAULTS = dict(aug_p_min=0.5, aug_min_crop=64, aug_theta=0.3, aug_scale=0.0, aug_noise=0.0)


def augmentation(cfg):
    """SkeletonLoader keyword arguments from the aug_* config keys."""
    return dict(p_interval=(cfg["aug_p_min"], 1.0), min_crop=cfg["aug_min_crop"], theta=cfg["aug_theta"],
                scale=cfg["aug_scale"], noise_sigma=cfg["aug_noise"])
PREFETCH_BATCHES = 3
UPLOAD_CHUNK = 1024  # samples per host-to-device copy when the split is made resident


class SkeletonLoader:
    def __init__(self, split, batch_size, *, train, device, out_frames=120, shuffle=None, drop_last=None,
                 seed=0, rank=0, world_size=1, data_on_device="auto", p_interval=None, theta=0.3,
                 min_crop=augment.MIN_CROP, scale=0.0, shear=0.0, noise_sigma=0.0, joint_mask_p=0.0):
        if batch_size < 1:
            raise ValueError(f"SkeletonLoader: batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"SkeletonLoader: rank {rank} outside world_size {world_size}")
        if data_on_device not in DATA_ON_DEVICE:
            raise ValueError(f"SkeletonLoader: data_on_device must be one of {DATA_ON_DEVICE}, got {data_on_device!r}")
        self.split = split
        self.batch_size = batch_size
        self.train = train
        self.device = torch.device(device)
        self.out_frames = out_frames
        self.shuffle = train if shuffle is None else shuffle
        self.drop_last = train if drop_last is None else drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.p_interval, self.theta, self.min_crop, self.scale = p_interval, theta, min_crop, scale
        self.extras = dict(shear=shear, noise_sigma=noise_sigma, joint_mask_p=joint_mask_p)  # train only, 0 = off
        self.epoch = 0
        self.lengths = np.asarray(split.lengths, dtype=np.int64)
        self.labels = np.asarray(split.labels, dtype=np.int64)
        self.resident = self._load_resident(data_on_device)
        if self.resident is not None:
            self.resident_lengths = torch.from_numpy(self.lengths).to(self.device)
            self.resident_labels = torch.from_numpy(self.labels).to(self.device)

    def _load_resident(self, mode):
        """The whole split as a device tensor when asked (or, for auto, on CUDA when it fits in a
        quarter of the free memory); None means batches are read from the memory map."""
        x = self.split.x
        if mode == "off" or (mode == "auto" and self.device.type != "cuda"):
            return None
        if mode == "auto" and x.nbytes > torch.cuda.mem_get_info(self.device)[0] // 4:
            return None
        resident = torch.empty(x.shape, dtype=torch.float32, device=self.device)
        for begin in range(0, len(x), UPLOAD_CHUNK):  # chunked: host memory stays one chunk
            resident[begin:begin + UPLOAD_CHUNK] = torch.from_numpy(np.array(x[begin:begin + UPLOAD_CHUNK]))
        return resident

    def set_epoch(self, epoch):
        """Selects the shuffle order and the augmentation of the epoch (call before iterating)."""
        self.epoch = int(epoch)

    def rank_indices(self):
        """The global sample indices this rank visits this epoch, in visiting order."""
        n = len(self.labels)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        else:
            order = np.arange(n)
        if self.train:  # equal count per rank, so DDP steps stay in lockstep
            per_rank = n // self.world_size
            return order[self.rank * per_rank:(self.rank + 1) * per_rank]
        return order[self.rank::self.world_size]

    def _batches(self):
        indices = self.rank_indices()
        stop = len(indices) - len(indices) % self.batch_size if self.drop_last else len(indices)
        # Sorted within a batch: the memory map is read front to back (order inside a batch is irrelevant).
        return [np.sort(indices[b:b + self.batch_size]) for b in range(0, stop, self.batch_size)]

    def __len__(self):
        return len(self._batches())

    def _read_host(self, idx):
        """CPU tensors of one batch: raw frames up to the longest valid length, lengths, labels."""
        frames = int(self.lengths[idx].max())
        pin = self.device.type == "cuda"
        x = torch.from_numpy(np.ascontiguousarray(self.split.x[idx, :, :frames]))
        tensors = (x, torch.from_numpy(self.lengths[idx]), torch.from_numpy(self.labels[idx]),
                   torch.from_numpy(idx))
        return tuple(t.pin_memory() for t in tensors) if pin else tensors

    def _producer(self, batches, out, stop):
        try:
            for idx in batches:
                item = self._read_host(idx)
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # re-raised in the consumer, which owns the traceback
            out.put(e)
            return
        out.put(None)

    def _augment(self, x, lengths, labels, indices):
        params = augment.sample_params(lengths, train=self.train, p_interval=self.p_interval, theta=self.theta,
                                       seed=self.seed, epoch=self.epoch, indices=indices, num_joints=x.shape[3],
                                       min_crop=self.min_crop, **self.extras)
        # Windows lie within the valid frames by construction: skip the check (a sync on CUDA).
        x = augment.apply(x, params, self.out_frames, check=False)
        if self.train and self.scale:
            x = x * self._scales(indices).to(x.device, x.dtype).view(-1, 1, 1, 1, 1)
        return x, labels

    def _scales(self, indices):
        """Per-sample scale factors keyed by (seed, epoch, global index), like the other parameters:
        one draw per sample of the split for the epoch, so batch, rank and order do not matter."""
        if getattr(self, "_scale_epoch", None) != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch, 0x5CA1E])
            self._scale_table = torch.from_numpy(rng.uniform(1 - self.scale, 1 + self.scale, len(self.labels)))
            self._scale_epoch = self.epoch
        return self._scale_table[indices.cpu()].float()

    def __iter__(self):
        batches = self._batches()
        if self.resident is not None:
            for idx in batches:
                index = torch.from_numpy(idx)
                # Pinned + non_blocking: a pageable copy would make the host wait for the device.
                dev_index = (index.pin_memory() if self.device.type == "cuda" else index).to(self.device,
                                                                                           non_blocking=True)
                frames = int(self.lengths[idx].max())
                x = self.resident[dev_index, :, :frames]  # (index_select is slow on CPU for 5-D rows)
                yield (*self._augment(x, self.resident_lengths[dev_index], self.resident_labels[dev_index],
                                      dev_index), index)
            return
        out, stop = queue.Queue(maxsize=PREFETCH_BATCHES), threading.Event()
        worker = threading.Thread(target=self._producer, args=(batches, out, stop), daemon=True)
        worker.start()
        try:
            while (item := out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                x, lengths, labels, index = (t.to(self.device, non_blocking=True) for t in item)
                yield (*self._augment(x, lengths, labels, index), item[3])
        finally:
            stop.set()
            worker.join()
