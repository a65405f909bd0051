"""MDFF high-pass on the GPU, forward and forward+backward: the fused Triton kernel against the
eager reference (explicit (B, L, L) softmax), an SDPA-based formulation and torch.compile of the
reference.

The model's shape: B = 256 bodies (128 samples x 2), L = 30 * 25 = 750 tokens per body (120
frames / t_patch 4, 25 joints), D = 256, fp32 and bf16. TFLOP/s count attention-equivalent work: forward
4*B*L^2*D (scores and P z), forward+backward 3.5x that (backward = 2.5x forward, as for flash
attention). Run by bench/gpu_suite.sh; on CPU every case skips.
"""
import pytest
import torch
import torch.nn.functional as F

from bench.common import peak_memory_mb, report, require_cuda, time_ms
from igm_fast.kernels.mdff import mdff_highpass_triton
from igm_fast.ops.mdff import mdff_highpass_reference

ETA = 0.5


def mdff_sdpa(z, eta, scale):
    """The same op with the attention part through scaled_dot_product_attention (flash or
    memory-efficient backend; z viewed as one head)."""
    zh = z.unsqueeze(1)
    return (1 + eta) * z - eta * F.scaled_dot_product_attention(zh, zh, zh, scale=scale).squeeze(1)


def implementations():
    # A fresh torch.compile per case: dynamo's per-function recompile limit would otherwise send
    # later shapes and dtypes back to eager without saying so in the table.
    torch._dynamo.reset()
    return {
        "triton": mdff_highpass_triton,
        "eager": mdff_highpass_reference,
        "sdpa": mdff_sdpa,
        "compile": torch.compile(mdff_highpass_reference, dynamic=False),
    }


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("B, L, D", [(256, 750, 256)])
def test_mdff_highpass(B, L, D, dtype, mode):
    require_cuda()
    z = torch.randn(B, L, D, device="cuda", dtype=dtype, requires_grad=mode == "fwd+bwd")
    grad = torch.randn_like(z)
    scale = D ** -0.5

    def step(fn):
        if mode == "fwd":
            return lambda: fn(z, ETA, scale)
        return lambda: torch.autograd.grad(fn(z, ETA, scale), z, grad)

    # A fast wrong kernel is no result: check against eager before timing.
    torch.testing.assert_close(step(mdff_highpass_triton)(), step(mdff_highpass_reference)(),
                               rtol=2e-2, atol=2e-2 * (1 + ETA) * z.detach().abs().max().item())

    flops = 4 * B * L * L * D * (1 if mode == "fwd" else 3.5)
    rows = {}
    for name, fn in implementations().items():
        run = step(fn)
        run()  # autotuning / compilation stays out of the timing
        ms, q20, q80 = time_ms(run)
        rows[name] = {"ms": ms, "q20_ms": q20, "q80_ms": q80, "tflops": flops / ms / 1e9, "peak_mb": peak_memory_mb(run)}
    dtype_name = "fp32" if dtype == torch.float32 else "bf16"
    report(f"mdff_highpass {mode}", f"B={B} L={L} D={D} {dtype_name}", rows, baseline="eager")
