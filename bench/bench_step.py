"""Whole pretraining step at the paper preset: IGM forward + backward + AdamW step, in samples/s,
with the fused ops (kernels="triton"), the eager references (kernels="eager") and torch.compile of
the fused model; fp32 and bf16 autocast (--amp). N = 128 samples x M = 2 bodies = 256 bodies of
L = 30 * 25 = 750 tokens, D = 256 (configs/paper.yaml). GPU only; on CPU it skips.
"""
import pytest
import torch

from bench.common import peak_memory_mb, report, require_cuda, time_ms
from igm_fast.model.igm import IGM

N, T_IN, JOINTS, BODIES = 128, 120, 25, 2


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
def test_pretraining_step(amp):
    require_cuda()
    x = torch.randn(N, 3, T_IN, JOINTS, BODIES, device="cuda")
    rows = {}
    for name, kernels, compiled in (("eager", "eager", False), ("fused", "triton", False),
                                    ("fused+compile", "triton", True)):
        torch.manual_seed(0)
        model = IGM(JOINTS, num_frames=T_IN, kernels=kernels).cuda().train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        forward = torch.compile(model) if compiled else model

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = forward(x)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # autotune / compile outside the timing
        ms, q20, q80 = time_ms(step, warmup=2, rep=10)
        rows[name] = {"ms": ms, "q20_ms": q20, "q80_ms": q80, "samples_per_s": N / ms * 1e3,
                      "peak_MB": peak_memory_mb(step)}
        del model, optimizer, forward
        torch.cuda.empty_cache()
    report("pretraining step", f"N={N} M={BODIES} L=750 D=256 {'bf16 autocast' if amp else 'fp32'}", rows)
