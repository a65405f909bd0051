"""IGM losses: each against a hand-computed case, and the model's losses against an independent
float64 recomputation from what its parts saw and returned."""
import math

import pytest
import torch
import torch.nn.functional as F

from igm_fast.model.encoder import patchify
from igm_fast.model.igm import IGM, feature_idempotency
from igm_fast.ops import similarity_kl


def approx(v):
    return pytest.approx(v, rel=1e-5)

V, T, TP, D = 5, 8, 4, 16


def test_feature_idempotency_hand_case():
    g_x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    g_hat = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.8, 0.6]])
    # 1 - cos: 1, 0, 1 - 0.96
    assert feature_idempotency(g_x, g_hat).item() == approx((1 + 0 + 0.04) / 3)


def test_distribution_loss_hand_case():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g_x = torch.tensor([[1.0, 0.0]])
    g_hat = torch.tensor([[0.0, 1.0]])
    tau = 0.5
    # P(g_x) = softmax([2, 0]), P(g_hat) = softmax([0, 2])
    p = [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]
    q = [p[1], p[0]]
    want = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert similarity_kl(g_x, g_hat, keys, tau, kernels="eager").item() == approx(want)


def test_distribution_loss_is_zero_for_equal_features():
    g = F.normalize(torch.randn(8, 16), dim=-1)
    assert similarity_kl(g, g.clone(), g, 0.1, kernels="eager").abs().item() < 1e-6


def capture(model):
    """Record the generator's (inputs, output) and every encoder pass's output tokens."""
    seen = {"encoder": []}

    def on_generator(module, args, out):
        seen["generator"] = (*[a.detach().double() if a.is_floating_point() else a for a in args],
                             out.detach().double())

    def on_encoder(module, args, out):
        seen["encoder"].append(out.detach().double())

    model.generator.register_forward_hook(on_generator)
    model.encoder.norm.register_forward_hook(on_encoder)
    return seen


def test_model_losses_match_an_independent_recomputation():
    torch.manual_seed(0)
    model = IGM(V, T, TP, D, 1, 2, gen_depth=1, mask_ratio=0.5, lambda_feat=0.7, lambda_dist=1.3, tau=0.2,
                kernels="eager")
    with torch.no_grad():  # a generator that predicts something non-trivial
        for p in model.generator.parameters():
            p.add_(0.1 * torch.randn_like(p))
    seen = capture(model)
    N, M = 3, 2
    x = torch.randn(N, 3, T, V, M)
    losses = model(x)

    x_t, t, cond, eps_hat = seen["generator"]
    x0 = patchify(x, TP).double()
    abar = (model.diffusion.sqrt_abar.double()[t] ** 2).view(-1, 1, 1)
    eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()  # the noise that was drawn
    gen = ((eps_hat - eps) ** 2).mean()
    assert losses["loss_gen"].item() == approx(gen.item())

    clean, reencoded = seen["encoder"]
    g_x = F.normalize(clean.reshape(N, -1, D).mean(1), dim=-1)
    g_hat = F.normalize(reencoded.reshape(N, -1, D).mean(1), dim=-1)
    feat = (1 - (g_x * g_hat).sum(-1)).mean()
    assert losses["loss_feat"].item() == approx(feat.item())

    kl = 0.0
    for i in range(N):
        p = torch.softmax(g_x @ g_x[i] / 0.2, 0)
        q = torch.softmax(g_x @ g_hat[i] / 0.2, 0)
        kl += (p * (p / q).log()).sum() / N
    assert losses["loss_dist"].item() == approx(kl.item())
    assert losses["loss"].item() == approx(gen.item() + 0.7 * feat.item() + 1.3 * kl.item())


def test_masked_only_noise_loss_ignores_visible_tokens():
    torch.manual_seed(0)
    model = IGM(V, T, TP, D, 1, 2, gen_depth=1, mask_ratio=0.5, gen_loss_tokens="masked", kernels="eager")
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.1 * torch.randn_like(p))
    seen = capture(model)
    keeps = []
    sample_keep = model.encoder.sample_keep

    def recording_keep(*args, **kwargs):
        keeps.append(sample_keep(*args, **kwargs))
        return keeps[-1]

    model.encoder.sample_keep = recording_keep
    x = torch.randn(2, 3, T, V, 2)
    loss_gen = model(x)["loss_gen"]
    x_t, t, cond, eps_hat = seen["generator"]
    abar = (model.diffusion.sqrt_abar.double()[t] ** 2).view(-1, 1, 1)
    eps = (x_t - abar.sqrt() * patchify(x, TP).double()) / (1 - abar).sqrt()
    masked = torch.ones(4, 10, dtype=torch.bool).scatter(1, keeps[0], False)
    want = ((eps_hat - eps) ** 2).mean(-1)[masked].mean()
    assert loss_gen.item() == approx(want.item())


def test_stop_gradient_target_changes_only_the_clean_branch_gradient():
    x = torch.randn(2, 3, T, V, 2)
    grads = {}
    for stop in (True, False):
        torch.manual_seed(0)
        model = IGM(V, T, TP, D, 1, 2, gen_depth=1, mask_ratio=0.5, lambda_dist=0.0, stop_grad_target=stop,
                    kernels="eager")
        torch.manual_seed(1)
        model(x)["loss_feat"].backward()
        grads[stop] = model.encoder.patch_embed.weight.grad.clone()
    assert not torch.allclose(grads[True], grads[False])


def test_a_few_steps_on_a_tiny_model_reduce_the_loss():
    torch.manual_seed(0)
    model = IGM(V, T, TP, D, 1, 2, gen_depth=1, mask_ratio=0.5, kernels="eager")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.randn(4, 3, T, V, 2)
    history = []
    for _ in range(30):
        torch.manual_seed(123)  # same masks, timesteps and noise every step: the loss is a function of the weights
        loss = model(x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.7 * history[0]
