"""Triton kernels behind igm_fast.ops (installed as igm_fast.kernels).

One file per op: the Triton kernels, the autograd Function that launches them, and the
torch.library registration. Eager references and the dispatcher live in igm_fast/ops/.
"""
