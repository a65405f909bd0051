"""Distributed setup in a few lines: torchrun sets the env, the same code runs single-process."""
import os

import torch
import torch.distributed as dist


def setup(device_type):
    """Initialise the process group when launched by torchrun; returns (rank, world_size, local_rank)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))


def setup_device(name):
    """`auto|cpu|cuda` -> (device, rank, world_size); under torchrun each rank takes its local GPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {name!r}; expected auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda, but torch sees no CUDA device")
    device_type = "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"
    rank, world, local_rank = setup(device_type)
    if device_type == "cpu":
        return torch.device("cpu"), rank, world
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device, rank, world


def cleanup():
    if dist.is_initialized():
        dist.destroy_process_group()


def is_distributed():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    return dist.get_rank() if is_distributed() else 0


def world_size():
    return dist.get_world_size() if is_distributed() else 1


def is_main():
    return rank() == 0


def all_gather_cat(x):
    """Concatenate `x` (no grad) from every rank; sizes may differ between ranks."""
    if not is_distributed():
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    n_max = int(max(s.item() for s in sizes))
    padded = torch.zeros((n_max, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    out = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(out, padded)
    return torch.cat([o[: int(s.item())] for o, s in zip(out, sizes)], dim=0)
