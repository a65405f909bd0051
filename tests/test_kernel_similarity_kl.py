"""Triton similarity-distribution KL vs the eager reference computed in float64.

On CPU the kernels run under the Triton interpreter (tests/conftest.py) at small shapes whose
rows and keys span several tiles with ragged edges; bf16 and paper-scale shapes need a GPU.
"""
import pytest
import torch
import torch.nn.functional as F

from igm_fast.kernels.similarity_kl import similarity_kl_triton
from igm_fast.ops import similarity_kl
from igm_fast.ops.similarity_kl import similarity_kl_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 and large shapes run on a GPU only")


def features(*shape, dtype=torch.float32):
    """L2-normalised rows, as the model's pooled features and keys are."""
    return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=-1).to(DEVICE, dtype)


def assert_close_rel(actual, expected, rel):
    """Elementwise within rel * max|expected| (plus rel relative): a 1e-4 relative bar that tiny
    entries of a gradient cannot fail through rounding alone."""
    expected = expected.to(torch.float64)
    atol = rel * expected.abs().max().item() + 1e-12
    torch.testing.assert_close(actual.to(torch.float64), expected, rtol=rel, atol=atol)


def kernel_and_reference(q_target, q_pred, keys, tau, grad_target=True):
    """Loss and gradients from the kernel on the given tensors and from the float64 reference on
    the same values."""
    wrt = [q_pred, keys] if not grad_target else [q_target, q_pred, keys]
    inputs = [t.detach().clone().requires_grad_(any(t is w for w in wrt)) for t in (q_target, q_pred, keys)]
    exact = [t.detach().to(torch.float64).requires_grad_(t.requires_grad) for t in inputs]
    loss = similarity_kl_triton(*inputs, tau)
    loss_ref = similarity_kl_reference(*exact, tau)
    grads = torch.autograd.grad(loss, [t for t in inputs if t.requires_grad])
    grads_ref = torch.autograd.grad(loss_ref, [t for t in exact if t.requires_grad])
    return loss, loss_ref, grads, grads_ref


@pytest.mark.parametrize("B, K, D", [(1, 1, 32), (37, 50, 32), (64, 96, 64), (23, 96, 20), (64, 17, 64), (130, 40, 32)])
@pytest.mark.parametrize("tau", [0.05, 0.1, 1.0])
def test_loss_and_all_gradients_match_float64_reference(B, K, D, tau):
    loss, loss_ref, grads, grads_ref = kernel_and_reference(features(B, D), features(B, D), features(K, D), tau)
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert_close_rel(loss, loss_ref, 1e-4)
    for g, g_ref in zip(grads, grads_ref):
        assert_close_rel(g, g_ref, 1e-4)


def test_detached_target_path_gives_the_same_gradients():
    """The model's call: q_target detached, so the kernel skips dq_target."""
    q_target, q_pred, keys = features(40, 32), features(40, 32), features(70, 32)
    _, _, grads, grads_ref = kernel_and_reference(q_target, q_pred, keys, 0.1, grad_target=False)
    assert len(grads) == 2
    for g, g_ref in zip(grads, grads_ref):
        assert_close_rel(g, g_ref, 1e-4)


def test_detached_keys_skip_the_keys_kernel(monkeypatch):
    """The model's call: keys = all_gather(g_x.detach()), q_target detached. Only dq_pred is
    computed; the keys kernel must not run at all."""
    import igm_fast.kernels.similarity_kl as kernels

    class NotLaunched:
        def __getitem__(self, grid):
            raise AssertionError("the keys' gradient kernel ran for keys that need no gradient")

    monkeypatch.setattr(kernels, "_backward_keys_kernel", NotLaunched())
    q_target, q_pred, keys = features(40, 32), features(40, 32), features(70, 32)
    pred = q_pred.clone().requires_grad_()
    (dq_pred,) = torch.autograd.grad(similarity_kl_triton(q_target, pred, keys, 0.1), [pred])
    exact = q_pred.double().requires_grad_()
    (dq_ref,) = torch.autograd.grad(similarity_kl_reference(q_target.double(), exact, keys.double(), 0.1), [exact])
    assert_close_rel(dq_pred, dq_ref, 1e-4)
    with pytest.raises(AssertionError, match="keys' gradient kernel ran"):
        torch.autograd.grad(similarity_kl_triton(q_target, pred, keys.clone().requires_grad_(), 0.1), [pred])


def test_large_logits_at_small_tau_stay_exact():
    """Unnormalised rows at tau 0.05: logits in the hundreds (exp would overflow fp32), softmaxes
    nearly one-hot, KL in the hundreds. (Far beyond, with KL in the thousands, dq_target is
    ill-conditioned in fp32 for the eager reference too: p * (log p - log q - KL) cancels.)"""
    q_target, q_pred, keys = (torch.randn(*s, device=DEVICE) for s in ((16, 32), (16, 32), (40, 32)))
    loss, loss_ref, grads, grads_ref = kernel_and_reference(q_target, q_pred, keys, 0.05)
    assert loss_ref > 100
    assert_close_rel(loss, loss_ref, 1e-4)
    for g, g_ref in zip(grads, grads_ref):
        assert_close_rel(g, g_ref, 1e-4)


@pytest.mark.parametrize("tau", [0.05, 1.0])
def test_identical_rows_give_zero_loss_and_zero_gradients(tau):
    q, keys = features(29, 64), features(50, 64)
    q_target, q_pred = q.clone().requires_grad_(), q.clone().requires_grad_()
    keys.requires_grad_()
    loss = similarity_kl_triton(q_target, q_pred, keys, tau)
    grads = torch.autograd.grad(loss, [q_target, q_pred, keys])
    assert loss.abs().item() < 1e-7
    for g in grads:
        assert g.abs().max().item() < 1e-7


def test_non_contiguous_inputs():
    """Row-strided slices are read in place, transposed/element-strided inputs are copied."""
    wide = features(30, 128)
    q_target = wide[:, :32]  # row stride 128
    q_pred = wide[:, 64::2]  # element stride 2
    keys = features(32, 45).T  # (45, 32), column-major
    loss, loss_ref, grads, grads_ref = kernel_and_reference(q_target, q_pred, keys, 0.1)
    assert_close_rel(loss, loss_ref, 1e-4)
    for g, g_ref in zip(grads, grads_ref):
        assert_close_rel(g, g_ref, 1e-4)


def test_weighted_rows_receive_their_own_upstream_gradient():
    """The per-row KL op gets a non-uniform upstream gradient when the loss is reweighted."""
    from igm_fast.kernels.similarity_kl import _similarity_kl_op

    inputs = [features(*s).requires_grad_() for s in ((20, 32), (20, 32), (33, 32))]
    weights = torch.linspace(0.0, 2.0, 20, device=DEVICE)
    kl, _, _ = _similarity_kl_op(*inputs, 0.2)
    grads = torch.autograd.grad((kl * weights).sum(), inputs)

    exact = [t.detach().double().requires_grad_() for t in inputs]
    log_p = torch.log_softmax(exact[0] @ exact[2].T / 0.2, -1)
    log_q = torch.log_softmax(exact[1] @ exact[2].T / 0.2, -1)
    kl_ref = (log_p.exp() * (log_p - log_q)).sum(-1)
    grads_ref = torch.autograd.grad((kl_ref * weights.double()).sum(), exact)
    assert_close_rel(kl, kl_ref, 1e-4)
    for g, g_ref in zip(grads, grads_ref):
        assert_close_rel(g, g_ref, 1e-4)


def test_dispatcher_routes_to_the_kernel():
    q_target, q_pred, keys = features(8, 32), features(8, 32), features(20, 32)
    expected = similarity_kl_triton(q_target, q_pred, keys, 0.1)
    assert torch.equal(similarity_kl(q_target, q_pred, keys, 0.1, kernels="triton"), expected)


def test_bad_inputs_raise_clear_errors(monkeypatch):
    q, keys = features(4, 32), features(6, 32)
    with pytest.raises(ValueError, match=r"\(B, D\) and keys \(K, D\)"):
        similarity_kl_triton(q[None], q[None], keys, 0.1)
    with pytest.raises(ValueError, match=r"\(B, D\) and keys \(K, D\)"):
        similarity_kl_triton(q, q, features(6, 16), 0.1)
    with pytest.raises(ValueError, match="one device"):
        similarity_kl_triton(q, q, keys.to("meta"), 0.1)
    with pytest.raises(TypeError, match="supported dtypes"):
        similarity_kl_triton(q.double(), q.double(), keys.double(), 0.1)
    with pytest.raises(ValueError, match="tau must be > 0"):
        similarity_kl_triton(q, q, keys, 0.0)
    with pytest.raises(ValueError, match="K=0"):
        similarity_kl_triton(q, q, keys[:0], 0.1)
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="needs CUDA tensors"):
            similarity_kl_triton(q, q, keys, 0.1)


def test_opcheck_forward_and_backward_ops():
    q_target, q_pred, keys = (features(*s).requires_grad_() for s in ((12, 32), (12, 32), (40, 32)))
    torch.library.opcheck(torch.ops.igm_fast.similarity_kl.default, (q_target, q_pred, keys, 0.1))
    kl, lse_p, lse_q = torch.ops.igm_fast.similarity_kl(q_target, q_pred, keys, 0.1)
    grad = torch.rand(12, device=DEVICE)
    for need_dq_target, need_dkeys in ((True, True), (False, True), (False, False)):
        torch.library.opcheck(torch.ops.igm_fast.similarity_kl_backward.default,
                              (grad, q_target.detach(), q_pred.detach(), keys.detach(), kl.detach(), lse_p, lse_q,
                               0.1, need_dq_target, need_dkeys))


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("B, K", [(1024, 1024), (4096, 4096), (1000, 3000)])
@pytest.mark.parametrize("dtype, rel", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_gpu_paper_scale(B, K, dtype, rel):
    D = 256
    loss, loss_ref, grads, grads_ref = kernel_and_reference(
        features(B, D, dtype=dtype), features(B, D, dtype=dtype), features(K, D, dtype=dtype), 0.1)
    assert loss.dtype == dtype
    assert_close_rel(loss, loss_ref, rel)
    for g, g_ref in zip(grads, grads_ref):
        assert g.dtype == dtype
        assert_close_rel(g, g_ref, rel)
