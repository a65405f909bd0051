"""Distribution idempotency: mean_i KL(softmax(q_target_i . K^T / tau) || softmax(q_pred_i . K^T / tau))."""
import torch

from igm_fast.ops.dispatch import use_triton


def similarity_kl_reference(q_target, q_pred, keys, tau):
    """Eager reference with explicit (B, K) logits. q_*: (B, D), keys: (K, D); returns a scalar."""
    log_p = torch.log_softmax(q_target @ keys.T / tau, dim=-1)
    log_q = torch.log_softmax(q_pred @ keys.T / tau, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def similarity_kl(q_target, q_pred, keys, tau, kernels="auto"):
    if q_target.ndim != 2 or q_pred.shape != q_target.shape or keys.ndim != 2 or keys.shape[1] != q_target.shape[1]:
        raise ValueError(f"similarity_kl: expected q_target, q_pred (B, D) and keys (K, D); got "
                         f"{tuple(q_target.shape)}, {tuple(q_pred.shape)}, {tuple(keys.shape)}")
    if use_triton(kernels, q_target, q_pred, keys):
        from igm_fast.kernels.similarity_kl import similarity_kl_triton

        return similarity_kl_triton(q_target, q_pred, keys, tau)
    return similarity_kl_reference(q_target, q_pred, keys, tau)
