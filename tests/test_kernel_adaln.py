"""Triton AdaLN modulation, gated residual and the fused gated residual + modulation vs the eager
references computed in float64.

On CPU the kernels run under the Triton interpreter (tests/conftest.py) at small shapes; bf16 and
paper-scale shapes need a GPU.
"""
import pytest
import torch

import igm_fast.kernels.adaln as adaln_kernels
from igm_fast.kernels.adaln import adaln_modulate_triton, gated_residual_modulate_triton, gated_residual_triton
from igm_fast.model.generator import GeneratorBlock
from igm_fast.ops import adaln_modulate, gated_residual, gated_residual_modulate
from igm_fast.ops.adaln import adaln_modulate_reference, gated_residual_modulate_reference, gated_residual_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 and large shapes run on a GPU only")


def randn(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=torch.float64).to(DEVICE, dtype)


def assert_close_rel(actual, expected, rel):
    """Elementwise within rel * max|expected| (plus rel relative)."""
    expected = expected.to(torch.float64)
    atol = rel * expected.abs().max().item() + 1e-12
    torch.testing.assert_close(actual.to(torch.float64), expected, rtol=rel, atol=atol)


def as_tuple(t):
    return t if isinstance(t, tuple) else (t,)


def check_against_reference(kernel, reference, inputs, rel=1e-4, grad_out=None, used=None):
    """Outputs and the gradients of every input, kernel on `inputs` vs reference in float64 on the
    same values. grad_out: one upstream gradient per output, random by default; used: the outputs
    that get one (all by default), the others used nowhere downstream."""
    inputs = [t.detach().requires_grad_() for t in inputs]  # detach keeps a view's strides
    exact = [t.detach().to(torch.float64).requires_grad_() for t in inputs]
    outs, outs_ref = as_tuple(kernel(*inputs)), as_tuple(reference(*exact))
    for out, out_ref in zip(outs, outs_ref, strict=True):
        assert out.shape == out_ref.shape and out.dtype == inputs[0].dtype
        assert_close_rel(out, out_ref, rel)
    grad_out = as_tuple(grad_out) if grad_out is not None else tuple(randn(*o.shape, dtype=o.dtype) for o in outs)
    used = range(len(outs)) if used is None else used
    # an input that only unused outputs depend on gets zeros
    grads = torch.autograd.grad([outs[i] for i in used], inputs, [grad_out[i] for i in used], materialize_grads=True)
    grads_ref = torch.autograd.grad([outs_ref[i] for i in used], exact, [grad_out[i].to(torch.float64) for i in used],
                                    materialize_grads=True)
    for g, g_ref, t in zip(grads, grads_ref, inputs):
        assert g.shape == t.shape
        assert_close_rel(g, g_ref, rel)


def param_shape(B, L, D, per_token):
    return (B, L, D) if per_token else (B, 1, D)


@pytest.mark.parametrize("L", [1, 7, 75, 130])
@pytest.mark.parametrize("D", [32, 64, 50])
@pytest.mark.parametrize("shift_per_token, scale_per_token",
                         [(False, False), (True, True), (True, False), (False, True)])
def test_adaln_modulate_matches_float64_reference(L, D, shift_per_token, scale_per_token):
    B = 3
    x = 2 * randn(B, L, D) + 0.5
    shift, scale = randn(*param_shape(B, L, D, shift_per_token)), randn(*param_shape(B, L, D, scale_per_token))
    check_against_reference(lambda *a: adaln_modulate_triton(*a, eps=1e-6),
                            lambda *a: adaln_modulate_reference(*a, eps=1e-6), [x, shift, scale])


@pytest.mark.parametrize("L", [1, 7, 75, 130])
@pytest.mark.parametrize("D", [32, 64, 50])
@pytest.mark.parametrize("gate_per_token", [False, True])
def test_gated_residual_matches_float64_reference(L, D, gate_per_token):
    B = 3
    x, y, gate = randn(B, L, D), randn(B, L, D), randn(*param_shape(B, L, D, gate_per_token))
    check_against_reference(gated_residual_triton, gated_residual_reference, [x, gate, y])


FUSED_PARAMS = [(False, False, False), (True, True, True), (True, False, True), (False, True, False)]


def fused_inputs(B, L, D, gate_per_token, shift_per_token, scale_per_token):
    """x, gate, y, shift, scale of gated_residual_modulate."""
    return [randn(B, L, D), randn(*param_shape(B, L, D, gate_per_token)), randn(B, L, D),
            randn(*param_shape(B, L, D, shift_per_token)), randn(*param_shape(B, L, D, scale_per_token))]


@pytest.mark.parametrize("L", [1, 7, 75])
@pytest.mark.parametrize("D", [24, 40, 64])
@pytest.mark.parametrize("gate_per_token, shift_per_token, scale_per_token", FUSED_PARAMS)
def test_gated_residual_modulate_matches_float64_reference(L, D, gate_per_token, shift_per_token, scale_per_token):
    check_against_reference(gated_residual_modulate_triton, gated_residual_modulate_reference,
                            fused_inputs(3, L, D, gate_per_token, shift_per_token, scale_per_token))


@pytest.mark.parametrize("used", [(0,), (1,)], ids=["residual_only", "out_only"])
@pytest.mark.parametrize("per_token", [False, True])
def test_gated_residual_modulate_with_one_output_used(used, per_token):
    """The output used nowhere sends no gradient (None, not zeros): residual only is the gated
    residual's backward; out only skips grad_residual in the kernel."""
    check_against_reference(gated_residual_modulate_triton, gated_residual_modulate_reference,
                            fused_inputs(2, 7, 40, per_token, per_token, per_token), used=used)


def test_backward_programs_spanning_several_row_tiles(monkeypatch):
    """With one backward program per sample, each program loops over all its row tiles and
    reduces the per-sample grads of every tile in registers."""
    monkeypatch.setattr(adaln_kernels, "TARGET_PROGRAMS", 1)
    B, L, D = 2, 130, 64  # 64-row tiles at D=64: three tiles, the last ragged
    x, shift, scale = randn(B, L, D), randn(B, 1, D), randn(B, 1, D)
    check_against_reference(adaln_modulate_triton, adaln_modulate_reference, [x, shift, scale])
    check_against_reference(gated_residual_triton, gated_residual_reference, [x, randn(B, 1, D), randn(B, L, D)])
    check_against_reference(gated_residual_modulate_triton, gated_residual_modulate_reference,
                            fused_inputs(B, L, D, False, False, False))


def test_constant_rows_use_eps():
    """Zero variance: the output is exactly shift, and eps keeps 1/std finite."""
    B, L, D = 2, 5, 32
    x = randn(B, L, 1).expand(B, L, D).contiguous()
    shift, scale = randn(B, 1, D), randn(B, L, D)
    check_against_reference(lambda *a: adaln_modulate_triton(*a, eps=1e-2),
                            lambda *a: adaln_modulate_reference(*a, eps=1e-2), [x, shift, scale])


def test_non_contiguous_inputs_and_expanded_grad():
    """Parameters as chunks of one fused (B, L, 2D) modulation output (row-strided, read in place),
    a per-sample parameter broadcast over the batch (sample stride 0), x with D not innermost,
    and the stride-0 gradient that .sum() sends back (DESIGN.md section 4)."""
    B, L, D = 3, 7, 32
    x = randn(B, D, L).transpose(1, 2)
    shift, scale = randn(B, L, 2 * D).chunk(2, dim=-1)
    check_against_reference(adaln_modulate_triton, adaln_modulate_reference, [x, shift, scale],
                            grad_out=torch.ones((), device=DEVICE).expand(B, L, D))
    gate = randn(1, 1, D).expand(B, 1, D)
    y = randn(B, L, 2 * D)[..., ::2]
    check_against_reference(gated_residual_triton, gated_residual_reference, [x, gate, y],
                            grad_out=torch.ones(B, 1, D, device=DEVICE).expand(B, L, D))
    gate, shift, scale = randn(B, L, 3 * D).chunk(3, dim=-1)
    check_against_reference(gated_residual_modulate_triton, gated_residual_modulate_reference,
                            [x, gate, y, shift, scale],
                            grad_out=(torch.ones((), device=DEVICE).expand(B, L, D), randn(B, L, D)))


def test_leaf_behind_a_broadcast_parameter_gets_the_summed_gradient():
    B, L, D = 4, 9, 32
    base = randn(1, 1, D).requires_grad_()
    x = randn(B, L, D)
    out = adaln_modulate_triton(x, base.expand(B, 1, D), torch.zeros(B, 1, D, device=DEVICE))
    (grad,) = torch.autograd.grad(out.sum(), base)
    torch.testing.assert_close(grad, torch.full_like(base, B * L))


def test_dispatchers_route_to_the_kernels():
    B, L, D = 2, 7, 32
    x, shift, scale, y = randn(B, L, D), randn(B, 1, D), randn(B, L, D), randn(B, L, D)
    assert torch.equal(adaln_modulate(x, shift, scale, kernels="triton"), adaln_modulate_triton(x, shift, scale))
    assert torch.equal(gated_residual(x, shift, y, kernels="triton"), gated_residual_triton(x, shift, y))
    for got, want in zip(gated_residual_modulate(x, shift, y, scale, shift, kernels="triton"),
                         gated_residual_modulate_triton(x, shift, y, scale, shift), strict=True):
        assert torch.equal(got, want)


def test_bad_inputs_raise_clear_errors(monkeypatch):
    B, L, D = 2, 7, 32
    x, p = randn(B, L, D), randn(B, 1, D)
    with pytest.raises(ValueError, match=r"x must be a non-empty \(B, L, D\)"):
        adaln_modulate_triton(x[0], p, p)
    with pytest.raises(ValueError, match=r"scale must be \(2, 1, 32\) or \(2, 7, 32\)"):
        adaln_modulate_triton(x, p, randn(B, 3, D))
    with pytest.raises(ValueError, match=r"y must be \(2, 7, 32\)"):
        gated_residual_triton(x, p, randn(B, 1, D))
    with pytest.raises(ValueError, match=r"gated_residual_modulate: shift must be \(2, 1, 32\) or \(2, 7, 32\)"):
        gated_residual_modulate_triton(x, p, x, randn(B, 1, 16), p)
    with pytest.raises(ValueError, match="one device"):
        gated_residual_triton(x, p.to("meta"), x)
    with pytest.raises(TypeError, match="supported dtypes"):
        adaln_modulate_triton(x.double(), p, p)
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="needs CUDA tensors"):
            gated_residual_triton(x, p, x)


def test_opcheck_forward_and_backward_ops():
    B, L, D = 2, 7, 32
    x, y = randn(B, L, D).requires_grad_(), randn(B, L, D).requires_grad_()
    for per_token in (False, True):
        shift = randn(*param_shape(B, L, D, per_token)).requires_grad_()
        scale = randn(*param_shape(B, L, D, not per_token)).requires_grad_()
        torch.library.opcheck(torch.ops.igm_fast.adaln_modulate.default, (x, shift, scale, 1e-6))
        torch.library.opcheck(torch.ops.igm_fast.gated_residual.default, (x, shift, y))
        _, mean, rstd = torch.ops.igm_fast.adaln_modulate(x, shift, scale, 1e-6)
        grad = randn(B, L, D)
        torch.library.opcheck(torch.ops.igm_fast.adaln_modulate_backward.default,
                              (grad, x.detach(), scale.detach(), mean, rstd, per_token, torch.float32))
        torch.library.opcheck(torch.ops.igm_fast.gated_residual_backward.default, (grad, shift.detach(), y.detach()))
        torch.library.opcheck(torch.ops.igm_fast.gated_residual_modulate.default, (x, scale, y, shift, scale, 1e-6))
        residual, _, mean, rstd = torch.ops.igm_fast.gated_residual_modulate(x, scale, y, shift, scale, 1e-6)
        for grad_residual in (None, randn(B, L, D)):
            torch.library.opcheck(torch.ops.igm_fast.gated_residual_modulate_backward.default,
                                  (grad, grad_residual, residual.detach(), scale.detach(), y.detach(), scale.detach(),
                                   mean, rstd, per_token, torch.float32))


def old_generator_block(block, x, c):
    """GeneratorBlock as two gated residuals and two modulations, from the references."""
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.adaLN_modulation(c).chunk(6, dim=-1)
    x = gated_residual_reference(x, gate_msa, block.attn(adaln_modulate_reference(x, shift_msa, scale_msa)))
    return gated_residual_reference(x, gate_mlp, block.mlp(adaln_modulate_reference(x, shift_mlp, scale_mlp)))


def perturbed_block(D, kernels):
    block = GeneratorBlock(D, heads=2, mlp_ratio=2.0, kernels=kernels).to(DEVICE)
    with torch.no_grad():  # the AdaLN-Zero modulation starts at zero: give it an effect
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block


def test_generator_block_on_the_fused_op_matches_the_old_composition_float64():
    B, L, D = 2, 7, 32
    block = perturbed_block(D, "triton")
    exact = GeneratorBlock(D, heads=2, mlp_ratio=2.0, kernels="eager").to(DEVICE, torch.float64)
    exact.load_state_dict(block.state_dict())
    x, c = randn(B, L, D), randn(B, L, D)
    out, out_ref = block(x, c), old_generator_block(exact, x.double(), c.double())
    assert_close_rel(out, out_ref, 1e-4)
    grad = randn(B, L, D)
    grads = torch.autograd.grad(out, list(block.parameters()), grad)
    grads_ref = torch.autograd.grad(out_ref, list(exact.parameters()), grad.double())
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert_close_rel(g, g_ref, 1e-4)


def test_compiled_generator_block_keeps_the_fused_op():
    """torch.compile(fullgraph=True) traces the block through the custom op and its autograd."""
    B, L, D = 2, 7, 32
    block = perturbed_block(D, "triton")
    x, c = randn(B, L, D), randn(B, L, D)
    graph_ops = []

    def recording_backend(gm, example_inputs):
        graph_ops.extend(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True, backend=recording_backend)
    loss, loss_ref = compiled(x, c).square().mean(), block(x, c).square().mean()
    assert any(op.startswith("igm_fast.gated_residual_modulate") for op in graph_ops), graph_ops
    torch.testing.assert_close(loss, loss_ref)
    params = list(block.parameters())
    for got, want in zip(torch.autograd.grad(loss, params), torch.autograd.grad(loss_ref, params), strict=True):
        torch.testing.assert_close(got, want)


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("dtype, rel", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
def test_gpu_paper_scale(per_token, dtype, rel):
    B, L, D = 256, 750, 256
    x = randn(B, L, D, dtype=dtype)
    params = [randn(*param_shape(B, L, D, per_token), dtype=dtype) for _ in range(3)]
    check_against_reference(adaln_modulate_triton, adaln_modulate_reference, [x, *params[:2]], rel=rel)
    check_against_reference(gated_residual_triton, gated_residual_reference, [x, params[2], x.clone()], rel=rel)
    check_against_reference(gated_residual_modulate_triton, gated_residual_modulate_reference,
                            [x, params[2], x.clone(), *params[:2]], rel=rel)
