"""IGM losses: each against a hand-computed case, and the model's losses against an independent
float64 recomputation from what its parts saw and returned."""
import math

import pytest
import torch
import torch.nn.functional as F

from igm_fast.model.encoder import patchify
from igm_fast.model.igm import IGM, feature_idempotency, uniformity
from igm_fast.ops import similarity_kl


def approx(v):
    return pytest.approx(v, rel=1e-5)

V, T, TP, D = 5, 8, 4, 16


def test_feature_idempotency_hand_case():
    g_x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    g_hat = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.8, 0.6]])
    # 1 - cos: 1, 0, 1 - 0.96
    assert feature_idempotency(g_x, g_hat).item() == approx((1 + 0 + 0.04) / 3)


def test_uniformity_hand_case():
    # unit tokens (1,0), (0,1), (-1,0): squared distances 2, 4, 2 -> ordered pairs 2,4,2,2,4,2 (t = 2)
    row = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    want_row = math.log((4 * math.exp(-4) + 2 * math.exp(-8)) / 6)
    # a second row: two identical directions (distance 0) and scale changes (the tokens are normalised)
    row2 = torch.tensor([[2.0, 0.0], [3.0, 0.0], [0.0, 0.5]])  # distances 0, 2, 2
    want_row2 = math.log((2 * 1 + 4 * math.exp(-4)) / 6)
    assert uniformity(torch.stack([row, row2])).item() == approx((want_row + want_row2) / 2)


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
    mean, std = torch.tensor([0.1, -0.2, 0.3]), torch.tensor([0.5, 2.0, 1.5])
    model = IGM(V, T, TP, D, 1, 2, gen_depth=1, mask_ratio=0.5, lambda_feat=0.7, lambda_dist=1.3, tau=0.2,
                lambda_uni=0.3, kernels="eager", input_mean=mean.tolist(), input_std=std.tolist())
    with torch.no_grad():  # a generator that predicts something non-trivial
        for p in model.generator.parameters():
            p.add_(0.1 * torch.randn_like(p))
    seen = capture(model)
    N, M = 3, 2
    x = torch.randn(N, 3, T, V, M)
    losses = model(x)

    x_t, t, cond, eps_hat = seen["generator"]
    assert (t.view(N, M) == t.view(N, M)[:, :1]).all()  # one timestep per sample, shared by its bodies
    x0 = patchify((x - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1), TP).double()  # standardised target
    abar = (model.diffusion.sqrt_abar.double()[t] ** 2).view(-1, 1, 1)
    eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()  # the noise that was drawn
    gen = ((eps_hat - eps) ** 2).mean()
    assert losses["loss_gen"].item() == approx(gen.item())

    clean, reencoded = seen["encoder"]
    u = F.normalize(clean, dim=-1)
    K = u.shape[1]
    pair_sq = torch.cdist(u, u) ** 2
    off = ~torch.eye(K, dtype=torch.bool)
    uni = torch.stack([torch.exp(-2 * d[off]).mean().log() for d in pair_sq]).mean()
    assert losses["loss_uni"].item() == approx(uni.item())

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
    want = gen.item() + 0.3 * uni.item() + 0.7 * feat.item() + 1.3 * kl.item()
    assert losses["loss"].item() == approx(want)


def perturbed_model(**kwargs):
    torch.manual_seed(0)
    model = IGM(V, T, TP, D, 1, 2, gen_depth=1, mask_ratio=0.5, kernels="eager", **kwargs)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def test_condition_dropout_zeroes_the_condition_in_training_only():
    model = perturbed_model(cond_drop=1.0)
    seen = capture(model)
    x = torch.randn(2, 3, T, V, 2)
    model(x)
    dropped = model.adapter(torch.zeros(4, T // TP * V, D)).detach().double()
    assert torch.allclose(seen["generator"][2], dropped)
    model.eval()
    model(x)
    assert not torch.allclose(seen["generator"][2], dropped)  # eval: the encoder's condition


def test_idempotency_scores_only_samples_below_ide_max_t():
    model = perturbed_model(ide_max_t=600)
    model.diffusion.sample_t = lambda n, device: torch.tensor([10, 700, 300, 999])[:n]
    seen = capture(model)
    N, M = 4, 2
    losses = model(torch.randn(N, 3, T, V, M))
    clean, reencoded = seen["encoder"]
    assert reencoded.shape[0] == 2 * M  # samples 0 and 2 only
    g_x = F.normalize(clean.reshape(N, -1, D).mean(1), dim=-1)[[0, 2]]
    g_hat = F.normalize(reencoded.reshape(2, -1, D).mean(1), dim=-1)
    assert losses["loss_feat"].item() == approx((1 - (g_x * g_hat).sum(-1)).mean().item())
    model.diffusion.sample_t = lambda n, device: torch.full((n,), 800)
    losses = model(torch.randn(N, 3, T, V, M))
    assert losses["loss_feat"].item() == 0 and losses["loss_dist"].item() == 0


@pytest.mark.parametrize("reencode, tokens, mask_draws", [("same", 5, 1), ("fresh", 5, 2), ("all", 10, 1)])
def test_reencode_sees_the_chosen_tokens(reencode, tokens, mask_draws):
    model = perturbed_model(ide_reencode=reencode)
    draws = []
    sample_keep = model.encoder.sample_keep
    model.encoder.sample_keep = lambda *a, **k: draws.append(sample_keep(*a, **k)) or draws[-1]
    seen = capture(model)
    model(torch.randn(2, 3, T, V, 2))
    clean, reencoded = seen["encoder"]
    assert clean.shape[1] == 5 and reencoded.shape[1] == tokens and len(draws) == mask_draws


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
        grads[stop] = model.encoder.tokenizer.patch_embed.weight.grad.clone()
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


def test_detached_reencoder_gets_no_idempotency_gradient_but_the_generator_does():
    x = torch.randn(2, 3, T, V, 2)
    grads, values = {}, {}
    for encoder_grad in (True, False):
        model = perturbed_model(ide_encoder_grad=encoder_grad, lambda_dist=0.0)
        torch.manual_seed(1)
        losses = model(x)
        values[encoder_grad] = losses["loss_feat"].item()
        losses["loss_feat"].backward()
        grads[encoder_grad] = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                               for n, p in model.named_parameters()}
        assert grads[encoder_grad]["generator.final_layer.linear.weight"].abs().sum() > 0
    assert values[True] == values[False] > 0  # same forward value either way; only gradients differ
    tok = "encoder.tokenizer.patch_embed.weight"
    assert not torch.allclose(grads[True][tok], grads[False][tok])
    # the timestep embedding serves only the re-encoding: detached, it gets nothing
    name = "encoder.t_embedder.mlp.2.weight"  # (mlp.0 gets no gradient yet: mlp.2 starts at zero)
    assert grads[True][name].abs().sum() > 0 and grads[False][name].abs().sum() == 0
