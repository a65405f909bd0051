"""Fused MDFF high-pass (kernels/mdff.py) against the eager reference run in float64.

Without CUDA the Triton kernels run in the interpreter (tests/conftest.py sets TRITON_INTERPRET=1),
so shapes stay small; with CUDA the same tests run compiled on the GPU, plus the GPU-only ones
(bf16, paper-scale shapes).
"""
import re
import subprocess
import sys

import pytest
import torch

from igm_fast.kernels import mdff as mdff_kernels
from igm_fast.kernels.mdff import MAX_D, mdff_highpass_bwd, mdff_highpass_fwd, mdff_highpass_triton
from igm_fast.ops import mdff_highpass
from igm_fast.ops.mdff import mdff_highpass_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU test: no CUDA device here")


def reference(z, eta, scale, grad):
    """Float64 eager output and dz for the same (rounded) input values."""
    z64 = z.detach().double().requires_grad_()
    out = mdff_highpass_reference(z64, eta, scale)
    (dz,) = torch.autograd.grad(out, z64, grad.double())
    return out.detach(), dz


def fused(z, eta, scale, grad):
    z = z.detach().requires_grad_()
    out = mdff_highpass_triton(z, eta, scale)
    (dz,) = torch.autograd.grad(out, z, grad)
    return out.detach(), dz


def relative_error(actual, expected):
    """max |actual - expected| over max |expected|: error relative to the tensor's scale."""
    return ((actual.double() - expected).abs().max() / expected.abs().max().clamp_min(1e-300)).item()


# D that is not a power of two (48, 20, 1) runs on zero-padded tiles.
@pytest.mark.parametrize("B, L, D", [(1, 1, 32), (4, 7, 64), (3, 75, 32), (2, 130, 64), (2, 75, 48), (3, 9, 20),
                                     (2, 5, 1)])
def test_forward_grad_and_lse_match_float64_reference(B, L, D):
    z = torch.randn(B, L, D, device=DEVICE)
    grad = torch.randn(B, L, D, device=DEVICE)
    scale = D ** -0.5
    out, dz = fused(z, 0.5, scale, grad)
    ref_out, ref_dz = reference(z, 0.5, scale, grad)
    assert out.dtype == dz.dtype == torch.float32
    assert relative_error(out, ref_out) < 1e-4
    assert relative_error(dz, ref_dz) < 1e-4

    _, attn, lse = mdff_highpass_fwd(z, 0.5, scale)
    z64 = z.double()
    scores = scale * z64 @ z64.transpose(1, 2)
    torch.testing.assert_close(lse.double(), torch.logsumexp(scores, dim=-1), rtol=1e-5, atol=1e-5)
    assert relative_error(attn, torch.softmax(scores, -1) @ z64) < 1e-4


@pytest.mark.parametrize("eta", [2.0, -0.3])
def test_other_eta_values(eta):
    z = torch.randn(2, 40, 32, device=DEVICE)
    grad = torch.randn_like(z)
    out, dz = fused(z, eta, 0.2, grad)
    ref_out, ref_dz = reference(z, eta, 0.2, grad)
    assert relative_error(out, ref_out) < 1e-4
    assert relative_error(dz, ref_dz) < 1e-4


def test_eta_zero_is_identity():
    z = torch.randn(2, 20, 32, device=DEVICE)
    grad = torch.randn_like(z)
    out, dz = fused(z, 0.0, 0.2, grad)
    torch.testing.assert_close(out, z, rtol=0, atol=0)
    torch.testing.assert_close(dz, grad, rtol=0, atol=1e-6)


def test_large_logits_stay_finite_and_accurate():
    """Clustered tokens of norm ~17 at scale 1: logits ~300 overflow a naive exp in fp32, and the
    softmax still spreads within each cluster, so the online max/rescale path is exercised."""
    centers = 3 * torch.randn(4, 32, device=DEVICE)
    z = centers[torch.randint(0, 4, (2, 75), device=DEVICE)] + 0.1 * torch.randn(2, 75, 32, device=DEVICE)
    grad = torch.randn_like(z)
    out, dz = fused(z, 0.5, 1.0, grad)
    ref_out, ref_dz = reference(z, 0.5, 1.0, grad)
    assert torch.isfinite(out).all() and torch.isfinite(dz).all()
    assert relative_error(out, ref_out) < 1e-4
    assert relative_error(dz, ref_dz) < 1e-4


def test_non_contiguous_input_and_expanded_grad():
    z = torch.randn(3, 64, 75, device=DEVICE).transpose(1, 2).requires_grad_()  # (B, L, D), strides (., 1, L)
    assert not z.is_contiguous()
    out = mdff_highpass_triton(z, 0.5, 0.125)
    (dz,) = torch.autograd.grad(out.sum(), z)  # .sum() hands back a stride-0 expanded gradient
    ref_out, ref_dz = reference(z, 0.5, 0.125, torch.ones_like(out))
    assert relative_error(out, ref_out) < 1e-4
    assert relative_error(dz, ref_dz) < 1e-4


def test_fp16_within_half_precision_of_reference():
    """16-bit path (probabilities and dS cast to the input dtype for the dots). bf16 takes the same
    path but is GPU-only: the Triton interpreter's tl.dot reads bf16 operands wrongly."""
    z = torch.randn(2, 75, 64, device=DEVICE).half()
    grad = torch.randn_like(z)
    out, dz = fused(z, 0.5, 0.125, grad)
    ref_out, ref_dz = reference(z, 0.5, 0.125, grad)
    assert out.dtype == dz.dtype == torch.float16
    assert relative_error(out, ref_out) < 1e-2
    assert relative_error(dz, ref_dz) < 1e-2


def bf16(t):
    return t.bfloat16().float()


@pytest.mark.parametrize("regime, eta", [("spread", 0.5), ("spread", 2.0), ("diagonal", 0.5), ("diagonal", 2.0)])
def test_bf16_arithmetic_is_as_accurate_as_eager_bf16(regime, eta):
    """The bf16 kernel's rounding (16-bit dot operands and outputs, fp32 accumulation), emulated
    in fp32 (ROUND_BF16) where the interpreter cannot do bf16 dots, against float64, next to eager
    PyTorch in bf16. "spread": low-norm tokens, near-uniform attention, O small next to z;
    "diagonal": random tokens at D=128, attention close to the identity, O close to z. A Delta
    taken from a 16-bit O or output fails the diagonal case with eta=2 (~3x eager's error)."""
    B, L, D = 1, 200, 128
    z = bf16((0.1 if regime == "spread" else 1.0) * torch.randn(B, L, D, device=DEVICE))
    grad = bf16(torch.randn(B, L, D, device=DEVICE))
    scale = D ** -0.5
    out, attn, lse = mdff_kernels._forward(z, eta, scale, round_bf16=True)
    dz = mdff_kernels._backward(grad, z, attn, lse, eta, scale, round_bf16=True)
    ref_out, ref_dz = reference(z, eta, scale, grad)

    z16 = z.bfloat16().requires_grad_()
    eager_out = mdff_highpass_reference(z16, eta, scale)
    (eager_dz,) = torch.autograd.grad(eager_out, z16, grad.bfloat16())
    for got, eager, ref in ((bf16(out), eager_out.detach(), ref_out), (bf16(dz), eager_dz, ref_dz)):
        assert relative_error(got, ref) <= relative_error(eager, ref)


def test_autocast_runs_the_kernel_in_the_autocast_dtype(monkeypatch):
    """Custom ops are not autocast by torch: the wrapper casts z as autocast would cast a matmul's
    input (fp16 here: the interpreter reads bf16 dot operands wrongly; bf16 on CUDA takes the
    same path). The gradient flows back to the fp32 input."""
    seen = []
    real = mdff_kernels._forward
    monkeypatch.setattr(mdff_kernels, "_forward", lambda z, *a, **k: seen.append(z.dtype) or real(z, *a, **k))
    z = torch.randn(2, 40, 32, device=DEVICE, requires_grad=True)
    with torch.autocast(DEVICE, dtype=torch.float16):
        out = mdff_highpass_triton(z, 0.5, 0.2)
    (dz,) = torch.autograd.grad(out, z, torch.ones_like(out))
    assert seen == [torch.float16] and out.dtype == torch.float16 and dz.dtype == torch.float32
    ref_out, ref_dz = reference(z.half().float(), 0.5, 0.2, torch.ones_like(z))
    assert relative_error(out, ref_out) < 1e-2
    assert relative_error(dz, ref_dz) < 1e-2
    mdff_highpass_triton(z, 0.5, 0.2)  # outside autocast: fp32
    assert seen[-1] == torch.float32


def test_empty_batch():
    z = torch.randn(0, 5, 32, device=DEVICE, requires_grad=True)
    out = mdff_highpass_triton(z, 0.5, 0.2)
    (dz,) = torch.autograd.grad(out, z, torch.ones_like(out))
    assert out.shape == dz.shape == (0, 5, 32)


def test_dispatcher_routes_to_kernel():
    z = torch.randn(2, 7, 32, device=DEVICE)
    torch.testing.assert_close(mdff_highpass(z, 0.5, 0.2, kernels="triton"), mdff_highpass_triton(z, 0.5, 0.2),
                               rtol=0, atol=0)
    torch.testing.assert_close(mdff_highpass(z, 0.5, 0.2, kernels="eager"), mdff_highpass_reference(z, 0.5, 0.2))


def test_opcheck_forward_and_backward_ops():
    z = torch.randn(2, 9, 32, device=DEVICE, requires_grad=True)
    torch.library.opcheck(mdff_highpass_fwd, (z, 0.5, 0.2))
    out, attn, lse = mdff_highpass_fwd(z.detach(), 0.5, 0.2)
    torch.library.opcheck(mdff_highpass_bwd, (torch.randn_like(out), z.detach(), attn, lse, 0.5, 0.2))


@pytest.mark.parametrize("shape, dtype, error, words", [
    ((7, 32), torch.float32, ValueError, "(B, L, D)"),
    ((2, 7, MAX_D + 64), torch.float32, ValueError, f"1 <= D <= {MAX_D}"),
    ((2, 7, 0), torch.float32, ValueError, f"1 <= D <= {MAX_D}"),
    ((2, 7, 32), torch.float64, TypeError, "torch.float64"),
])
def test_bad_input_is_a_clear_error(shape, dtype, error, words):
    with pytest.raises(error, match=re.escape(words)):
        mdff_highpass_triton(torch.zeros(shape, dtype=dtype, device=DEVICE), 0.5, 0.2)


def test_tensor_eta_is_a_clear_error():
    with pytest.raises(TypeError, match="Python numbers"):
        mdff_highpass_triton(torch.zeros(2, 7, 32, device=DEVICE), torch.tensor(0.5, requires_grad=True), 0.2)


def test_cpu_tensor_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        mdff_highpass_triton(torch.zeros(2, 7, 32), 0.5, 0.2)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("B, L, D", [(256, 750, 256), (64, 750, 128), (33, 131, 96)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_paper_scale(B, L, D, dtype):
    """fp32 to 1e-4 of the float64 reference; bf16 no worse than twice the eager bf16 error
    (and within 2% of the tensor's scale)."""
    z = torch.randn(B, L, D, device="cuda").to(dtype)
    grad = torch.randn(B, L, D, device="cuda").to(dtype)
    scale = D ** -0.5
    out, dz = fused(z, 0.5, scale, grad)
    ref_out, ref_dz = reference(z, 0.5, scale, grad)
    if dtype == torch.float32:
        assert relative_error(out, ref_out) < 1e-4
        assert relative_error(dz, ref_dz) < 1e-4
        return
    eager_z = z.detach().requires_grad_()
    eager_out = mdff_highpass_reference(eager_z, 0.5, scale)
    (eager_dz,) = torch.autograd.grad(eager_out, eager_z, grad)
    for got, eager, ref in ((out, eager_out.detach(), ref_out), (dz, eager_dz, ref_dz)):
        assert relative_error(got, ref) <= max(2 * relative_error(eager, ref), 2e-2)


@pytest.mark.parametrize("setting, expected", [
    ("", "ieee"),
    ("torch.backends.cuda.matmul.fp32_precision = 'tf32'", "tf32"),
    ("torch.set_float32_matmul_precision('high')", "tf32"),
    ("torch.backends.cuda.matmul.allow_tf32 = True", "tf32"),
])
def test_fp32_dot_precision_follows_torch_matmul_setting(setting, expected):
    """In a fresh interpreter: the settings are process-wide, and mixing the legacy and new TF32
    APIs makes torch's legacy getters raise."""
    code = (f"import torch\n{setting}\nfrom igm_fast.kernels.checks import dot_precision\n"
            "print(dot_precision(torch.float32), dot_precision(torch.bfloat16))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == [expected, "tf32"]
