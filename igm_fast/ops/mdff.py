"""MDFF high-pass: z_hat = (1+eta)*z - eta * softmax(scale * z z^T, dim=-1) z, per body."""
import torch

from igm_fast.ops.dispatch import use_triton


def mdff_highpass_reference(z, eta, scale):
    """Eager reference with the explicit (B, L, L) attention matrix. z: (B, L, D)."""
    attn = torch.softmax(scale * (z @ z.transpose(-1, -2)), dim=-1)
    return (1 + eta) * z - eta * (attn @ z)


def mdff_highpass(z, eta, scale, kernels="auto"):
    if z.ndim != 3:
        raise ValueError(f"mdff_highpass: z must be (B, L, D), got shape {tuple(z.shape)}")
    if use_triton(kernels, z):
        from igm_fast.kernels.mdff import mdff_highpass_triton

        return mdff_highpass_triton(z, eta, scale)
    return mdff_highpass_reference(z, eta, scale)
