"""AdaLN-Zero pieces of the generator block: modulated LayerNorm and gated residual."""
import torch
import torch.nn.functional as F

from igm_fast.ops.dispatch import use_triton


def adaln_modulate_reference(x, shift, scale, eps=1e-6):
    """LayerNorm(x, no affine) * (1 + scale) + shift; shift/scale (B, 1, D) or (B, L, D)."""
    return F.layer_norm(x, x.shape[-1:], eps=eps) * (1 + scale) + shift


def gated_residual_reference(x, gate, y):
    """x + gate * y; gate (B, 1, D) or (B, L, D)."""
    return x + gate * y


def _check(name, x, *params):
    if x.ndim != 3:
        raise ValueError(f"{name}: x must be (B, L, D), got {tuple(x.shape)}")
    B, L, D = x.shape
    for p in params:
        if p.ndim != 3 or p.shape[0] != B or p.shape[1] not in (1, L) or p.shape[2] != D:
            raise ValueError(f"{name}: parameters must be (B, 1, D) or (B, L, D) = ({B}, {L}, {D}), "
                             f"got {tuple(p.shape)}")


def adaln_modulate(x, shift, scale, eps=1e-6, kernels="auto"):
    _check("adaln_modulate", x, shift, scale)
    if use_triton(kernels, x, shift, scale):
        from igm_fast.kernels.adaln import adaln_modulate_triton

        return adaln_modulate_triton(x, shift, scale, eps)
    return adaln_modulate_reference(x, shift, scale, eps)


def gated_residual(x, gate, y, kernels="auto"):
    _check("gated_residual", x, gate)
    if y.shape != x.shape:
        raise ValueError(f"gated_residual: y {tuple(y.shape)} must match x {tuple(x.shape)}")
    if use_triton(kernels, x, gate, y):
        from igm_fast.kernels.adaln import gated_residual_triton

        return gated_residual_triton(x, gate, y)
    return gated_residual_reference(x, gate, y)
