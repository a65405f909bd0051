"""Fusable ops of IGM: each has an eager reference, a Triton kernel (igm_fast.kernels) and
a dispatcher choosing between them with `kernels="auto"|"triton"|"eager"`
(auto = Triton for CUDA tensors, eager otherwise)."""
from igm_fast.ops.adaln import adaln_modulate, gated_residual, gated_residual_modulate
from igm_fast.ops.dispatch import use_triton
from igm_fast.ops.mdff import mdff_highpass
from igm_fast.ops.similarity_kl import similarity_kl

__all__ = ["mdff_highpass", "similarity_kl", "adaln_modulate", "gated_residual", "gated_residual_modulate",
           "use_triton"]
