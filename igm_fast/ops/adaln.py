"""AdaLN-Zero pieces of the generator block: modulated LayerNorm, gated residual, and a gated
residual followed by the next modulated LayerNorm in one op."""
import torch
import torch.nn.functional as F

from igm_fast.ops.dispatch import use_triton


def adaln_modulate_reference(x, shift, scale, eps=1e-6):
    """LayerNorm(x, no affine) * (1 + scale) + shift; shift/scale (B, 1, D) or (B, L, D)."""
    return F.layer_norm(x, x.shape[-1:], eps=eps) * (1 + scale) + shift


def gated_residual_reference(x, gate, y):
    """x + gate * y; gate (B, 1, D) or (B, L, D)."""
    return x + gate * y


def gated_residual_modulate_reference(x, gate, y, shift, scale, eps=1e-6):
    """(r, LayerNorm(r, no affine) * (1 + scale) + shift) with r = x + gate * y."""
    residual = gated_residual_reference(x, gate, y)
    return residual, adaln_modulate_reference(residual, shift, scale, eps)


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


def _check_y(name, x, y):
    if y.shape != x.shape:
        raise ValueError(f"{name}: y {tuple(y.shape)} must match x {tuple(x.shape)}")


def gated_residual(x, gate, y, kernels="auto"):
    _check("gated_residual", x, gate)
    _check_y("gated_residual", x, y)
    if use_triton(kernels, x, gate, y):
        from igm_fast.kernels.adaln import gated_residual_triton

        return gated_residual_triton(x, gate, y)
    return gated_residual_reference(x, gate, y)


def gated_residual_modulate(x, gate, y, shift, scale, eps=1e-6, kernels="auto"):
    """(residual, out) = (x + gate * y, adaln_modulate(residual, shift, scale, eps)): one kernel
    on the Triton path, where the two ops would write and read back the residual in between."""
    _check("gated_residual_modulate", x, gate, shift, scale)
    _check_y("gated_residual_modulate", x, y)
    if use_triton(kernels, x, gate, y, shift, scale):
        from igm_fast.kernels.adaln import gated_residual_modulate_triton

        return gated_residual_modulate_triton(x, gate, y, shift, scale, eps)
    return gated_residual_modulate_reference(x, gate, y, shift, scale, eps)
