"""Building blocks shared by the encoder and the generator: skeleton tokenizer, attention, MLP,
drop path, timestep embedding. Attention goes through `F.scaled_dot_product_attention`, so no L x L
matrix is ever materialised by our code (flash / memory-efficient kernels where available)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SkeletonTokenizer(nn.Module):
    """Patches (B, L, 3*t_patch), time-major over (T/t_patch, V) -> tokens (B, L, D) with learned
    time + joint position embeddings (MAMP's spatio-temporal embedding, factorised)."""

    def __init__(self, num_joints, num_frames, t_patch, dim):
        super().__init__()
        self.patch_embed = nn.Linear(3 * t_patch, dim)
        self.time_pos = nn.Parameter(torch.zeros(1, num_frames // t_patch, 1, dim))
        self.joint_pos = nn.Parameter(torch.zeros(1, 1, num_joints, dim))
        nn.init.trunc_normal_(self.time_pos, std=0.02)
        nn.init.trunc_normal_(self.joint_pos, std=0.02)

    def forward(self, patches):
        return self.patch_embed(patches) + (self.time_pos + self.joint_pos).flatten(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class Mlp(nn.Module):
    def __init__(self, dim, mlp_ratio):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample (used by finetuning)."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


def timestep_frequencies(t, dim, max_period=10000):
    """Sinusoidal features of integer timesteps t (B,) -> (B, dim), as DiT / guided diffusion."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal frequencies -> MLP -> (B, D). The owning model initialises it (DiT: normal 0.02)."""

    def __init__(self, dim, freq_dim=256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        return self.mlp(timestep_frequencies(t, self.freq_dim))


def init_linear(module):
    """Xavier-uniform weights, zero biases (ViT / MAE / DiT convention)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
