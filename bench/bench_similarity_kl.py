"""similarity_kl forward and forward+backward: Triton vs the eager reference vs
torch.compile(reference), at the model's global batch sizes (B = K = 128, the paper preset on one
GPU, and 1024, D = 256).

The model's call: q_target and keys detached (the clean branch is the target; keys are
all_gather(g_x.detach())), the gradient goes to q_pred only. TFLOP/s counts the B x K x D products
the eager reference computes (the fused kernels recompute the logits, which is not counted).
"""
import pytest
import torch
import torch.nn.functional as F

from bench.common import peak_memory_mb, report, require_cuda, time_ms
from igm_fast.ops.similarity_kl import similarity_kl_reference

TAU = 0.1
D = 256


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("B", [128, 1024])
def test_similarity_kl(B, dtype):
    require_cuda()
    from igm_fast.kernels.similarity_kl import similarity_kl_triton

    K = B
    q_target = F.normalize(torch.randn(B, D, device="cuda"), dim=-1).to(dtype)
    q_pred = F.normalize(torch.randn(B, D, device="cuda"), dim=-1).to(dtype).requires_grad_()
    keys = F.normalize(torch.randn(K, D, device="cuda"), dim=-1).to(dtype)
    impls = {"triton": similarity_kl_triton, "eager": similarity_kl_reference,
             "compile": torch.compile(similarity_kl_reference, fullgraph=True)}
    for mode, flops in (("fwd", 2 * 2 * B * K * D), ("fwd+bwd", 4 * 2 * B * K * D)):
        rows = {}
        for name, fn in impls.items():
            if mode == "fwd":
                def step(fn=fn):
                    with torch.no_grad():
                        return fn(q_target, q_pred, keys, TAU)
            else:
                def step(fn=fn):
                    return torch.autograd.grad(fn(q_target, q_pred, keys, TAU), [q_pred])
            step()  # compile / autotune outside the timing
            ms, q20, q80 = time_ms(step)
            rows[name] = {"ms": ms, "q20_ms": q20, "q80_ms": q80, "TFLOP/s": flops / ms / 1e9,
                          "peak_MB": peak_memory_mb(step)}
        report(f"similarity_kl {mode}", f"B=K={B} D={D} {str(dtype).removeprefix('torch.')} tau={TAU}", rows)
