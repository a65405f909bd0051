"""AdaLN modulate, gated residual and the fused gated residual + modulate, forward and
forward+backward: Triton vs the eager references vs torch.compile(reference), at the generator's
paper-scale activations (B = 256 bodies, L = 750 tokens, D = 256), parameters per sample (B, 1, D)
and per token (B, L, D). The fused op is also timed against what it replaces in the generator
block, the two Triton ops gated_residual then adaln_modulate ("triton_unfused").

GB/s is effective bandwidth: the bytes a fused implementation must move at least (every input
read once, every output written once; the gradients that equal the incoming gradient, dshift
per token and dx of the residual, move nothing), divided by each implementation's time.
"""
import pytest
import torch

from bench.common import peak_memory_mb, report, require_cuda, time_ms
from igm_fast.ops.adaln import adaln_modulate_reference, gated_residual_modulate_reference, gated_residual_reference

B, L, D = 256, 750, 256


def min_bytes(op, mode, per_token, itemsize):
    x = B * L * D
    p = x if per_token else B * D  # one parameter tensor
    if op == "adaln_modulate":
        fwd = 2 * x + 2 * p  # x, shift, scale -> out
        bwd = 3 * x + p + (p if per_token else 0)  # grad, x, scale -> dx, dscale
    elif op == "gated_residual_modulate":
        fwd = 4 * x + 3 * p  # x, gate, y, shift, scale -> residual, out
        bwd = 6 * x + 2 * p + (2 * p if per_token else 0)  # 2 grads, r, gate, y, scale -> dx, dy, dgate, dscale
    else:
        fwd = 3 * x + p  # x, gate, y -> out
        bwd = 3 * x + p + (p if per_token else 0)  # grad, gate, y -> dy, dgate
    return (fwd if mode == "fwd" else fwd + bwd) * itemsize


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("per_token", [False, True], ids=["per_sample", "per_token"])
@pytest.mark.parametrize("op", ["adaln_modulate", "gated_residual", "gated_residual_modulate"])
def test_adaln(op, per_token, dtype):
    require_cuda()
    from igm_fast.kernels.adaln import adaln_modulate_triton, gated_residual_modulate_triton, gated_residual_triton

    def make(*shape):
        return torch.randn(*shape, device="cuda", dtype=dtype).requires_grad_()

    param_shape = (B, L, D) if per_token else (B, 1, D)
    if op == "adaln_modulate":
        inputs = (make(B, L, D), make(*param_shape), make(*param_shape))
        triton_fn, reference = adaln_modulate_triton, adaln_modulate_reference
    elif op == "gated_residual":
        inputs = (make(B, L, D), make(*param_shape), make(B, L, D))
        triton_fn, reference = gated_residual_triton, gated_residual_reference
    else:
        inputs = (make(B, L, D), make(*param_shape), make(B, L, D), make(*param_shape), make(*param_shape))
        triton_fn, reference = gated_residual_modulate_triton, gated_residual_modulate_reference
    # one upstream gradient per output: the fused op's residual and output both feed the rest of the block
    outputs = 2 if op == "gated_residual_modulate" else 1
    grad_out = tuple(torch.randn(B, L, D, device="cuda", dtype=dtype) for _ in range(outputs))
    impls = {"triton": triton_fn, "eager": reference, "compile": torch.compile(reference, fullgraph=True)}
    if op == "gated_residual_modulate":
        def two_ops(x, gate, y, shift, scale):
            residual = gated_residual_triton(x, gate, y)
            return residual, adaln_modulate_triton(residual, shift, scale)
        impls["triton_unfused"] = two_ops
    for mode in ("fwd", "fwd+bwd"):
        rows = {}
        for name, fn in impls.items():
            if mode == "fwd":
                def step(fn=fn):
                    with torch.no_grad():
                        return fn(*inputs)
            else:
                def step(fn=fn):
                    return torch.autograd.grad(fn(*inputs), inputs, grad_out)
            step()  # compile outside the timing
            ms, q20, q80 = time_ms(step)
            rows[name] = {"ms": ms, "q20_ms": q20, "q80_ms": q80,
                          "GB/s": min_bytes(op, mode, per_token, grad_out[0].element_size()) / ms / 1e6,
                          "peak_MB": peak_memory_mb(step)}
        report(f"{op} {mode}", f"B={B} L={L} D={D} {'per-token' if per_token else 'per-sample'} "
               f"{str(dtype).removeprefix('torch.')}", rows)
