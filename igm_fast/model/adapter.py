"""Adapter h (MDFF): high-pass over the tokens of each body, then LayerNorm + Linear(D, D).

z_hat = (1 + eta) * z - eta * softmax(s * z z^T) z sharpens what distinguishes a token from
the tokens it resembles. eta and s are not given by the paper: eta = 0.5 and s = 1/sqrt(D)
are our defaults (config keys `mdff_eta`, `mdff_scale`).
"""
import torch.nn as nn

from igm_fast.ops import mdff_highpass


class MDFFAdapter(nn.Module):
    def __init__(self, dim, eta=0.5, scale=None, kernels="auto"):
        super().__init__()
        self.eta = eta
        self.scale = dim ** -0.5 if scale is None else scale
        self.kernels = kernels
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, z):
        """z (B, L, D) per-token condition of each body -> (B, L, D)."""
        return self.proj(self.norm(mdff_highpass(z, self.eta, self.scale, kernels=self.kernels)))
