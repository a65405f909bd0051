"""Model parts: token layout, encoder (masking, timestep embedding, pooling, export), adapter,
generator. References are written out independently in float64."""
import math

import pytest
import torch
import torch.nn as nn

from igm_fast.io import InputError, atomic_torch_save
from igm_fast.model.adapter import MDFFAdapter
from igm_fast.model.encoder import Encoder, load_encoder, patchify, save_encoder, unpatchify
from igm_fast.model.generator import Generator
from igm_fast.model.igm import IGM, condition
from igm_fast.model.layers import Attention, DropPath

V, T, TP, D = 5, 8, 4, 16  # tiny: 5 joints, 8 frames -> L = 2 * 5 = 10 tokens per body


def tiny_encoder(**kw):
    return Encoder(V, num_frames=T, t_patch=TP, dim=D, depth=2, heads=2, **kw)


def perturb(module, std=0.1):
    """Give zero-initialised layers non-zero weights, so tests see their effect."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)


def test_patchify_token_holds_one_joint_over_t_patch_frames():
    x = torch.randn(2, 3, T, V, 2)
    p = patchify(x, TP)
    assert p.shape == (2 * 2, (T // TP) * V, TP * 3)
    n, m, tp, j = 1, 1, 1, 3  # body row n*M+m, token (time patch tp, joint j): time-major, joint-minor
    want = x[n, :, tp * TP:(tp + 1) * TP, j, m].T.reshape(-1)  # frame-major, xyz-minor
    assert torch.equal(p[n * 2 + m, tp * V + j], want)
    assert torch.equal(unpatchify(p, 2, V, TP), x)


def test_attention_matches_explicit_softmax_float64():
    attn = Attention(D, heads=2).double()
    x = torch.randn(3, 7, D, dtype=torch.float64)
    q, k, v = attn.qkv(x).view(3, 7, 3, 2, D // 2).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // 2), dim=-1)
    want = attn.proj((weights @ v).transpose(1, 2).reshape(3, 7, D))
    torch.testing.assert_close(attn(x), want)


def test_encoder_shapes_and_gradients():
    enc = tiny_encoder()
    perturb(enc.t_embedder)
    x = torch.randn(3, 3, T, V, 2)
    assert enc(x).shape == (6, 10, D)
    assert enc(x, mask_ratio=0.7).shape == (6, 3, D)
    assert enc.features(x).shape == (3, D)
    out = enc(x, mask_ratio=0.5, t=torch.randint(0, 1000, (6,)))
    (out * torch.randn_like(out)).sum().backward()  # not .sum(): LayerNorm output sums to a constant
    # emb(t) - emb(0) cancels the embedder's output bias, so that one gets no gradient by design.
    dead = {"t_embedder.mlp.2.bias"}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in enc.named_parameters() if n not in dead)
    assert isinstance(enc.blocks, nn.ModuleList) and len(enc.blocks) == 2
    assert enc.config == dict(num_joints=V, num_frames=T, t_patch=TP, dim=D, depth=2, heads=2, mlp_ratio=4.0,
                              drop_path=0.0, input_mean=[0.0, 0.0, 0.0], input_std=[1.0, 1.0, 1.0])


def test_features_are_the_mean_over_bodies_time_and_joints():
    enc = tiny_encoder().eval()
    x = torch.randn(3, 3, T, V, 2)
    tokens = enc(x).reshape(3, 2, 10, D)
    torch.testing.assert_close(enc.features(x), tokens.mean(dim=(1, 2)))


def test_masking_keeps_sorted_unique_tokens_and_sees_only_them():
    enc = tiny_encoder().eval()
    keep = enc.sample_keep(50, 0.7, "cpu")
    assert keep.shape == (50, 3)
    assert (keep[:, 1:] > keep[:, :-1]).all() and keep.min() >= 0 and keep.max() < 10
    x = torch.randn(2, 3, T, V, 2)
    patches = patchify(x, TP)
    everything = torch.arange(10).expand(4, 10)
    torch.testing.assert_close(enc.encode_patches(patches, everything), enc.encode_patches(patches))
    # The visible tokens' output does not depend on what the masked tokens contain.
    keep = enc.sample_keep(4, 0.5, "cpu")
    changed = patches.clone()
    hidden = torch.ones(4, 10, dtype=torch.bool).scatter(1, keep, False)
    changed[hidden] = torch.randn_like(changed[hidden])
    torch.testing.assert_close(enc.encode_patches(changed, keep), enc.encode_patches(patches, keep))


def test_timestep_embedding_is_exactly_neutral_at_t0():
    enc = tiny_encoder().eval()
    x = torch.randn(2, 3, T, V, 2)
    t = torch.full((4,), 500)
    assert torch.equal(enc(x, t=t), enc(x))  # zero-initialised
    perturb(enc.t_embedder)  # as after training
    assert torch.equal(enc(x, t=torch.zeros(4, dtype=torch.long)), enc(x))
    assert not torch.allclose(enc(x, t=t), enc(x))


def test_drop_path_is_identity_in_eval_and_unbiased_in_train():
    dp = DropPath(0.3)
    x = torch.ones(20000, 4)
    assert torch.equal(dp.eval()(x), x)
    y = dp.train()(x)
    assert set(y.unique().tolist()) <= {0.0, torch.tensor(1 / 0.7).item()}
    assert (y[:, 0:1] == y).all()  # a whole sample's branch is dropped or kept
    assert abs(y.mean().item() - 1) < 0.03


def test_save_load_encoder_roundtrip_and_overrides(tmp_path):
    enc = tiny_encoder().eval()
    save_encoder(enc, tmp_path / "encoder.pt")
    obj = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert obj["format"] == "igm_fast-encoder" and obj["config"] == enc.config
    loaded = load_encoder(tmp_path / "encoder.pt").eval()
    x = torch.randn(2, 3, T, V, 2)
    assert torch.equal(loaded.features(x), enc.features(x))
    assert load_encoder(tmp_path / "encoder.pt", drop_path=0.2).config["drop_path"] == 0.2
    # a file from before the shared tokenizer: its weights at the top level
    obj["state_dict"] = {k.removeprefix("tokenizer."): v for k, v in obj["state_dict"].items()}
    assert "patch_embed.weight" in obj["state_dict"]
    torch.save(obj, tmp_path / "old.pt")
    assert torch.equal(load_encoder(tmp_path / "old.pt").eval().features(x), enc.features(x))


def test_load_encoder_from_training_checkpoint(tmp_path):
    model = IGM(V, T, TP, D, 2, 2, gen_depth=1)
    atomic_torch_save({"format": "igm_fast-train", "config": {}, "encoder_config": model.encoder.config,
                       "model": model.state_dict()}, tmp_path / "checkpoint_last.pt")
    loaded = load_encoder(tmp_path / "checkpoint_last.pt").eval()
    x = torch.randn(2, 3, T, V, 2)
    assert torch.equal(loaded.features(x), model.encoder.eval().features(x))


def test_load_encoder_rejects_bad_files(tmp_path):
    enc = tiny_encoder()
    save_encoder(enc, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    wrong = tiny_encoder().state_dict()
    torch.save({"format": "igm_fast-encoder", "config": {**enc.config, "dim": 2 * D}, "state_dict": wrong},
               tmp_path / "mismatch.pt")
    for name, message in (("truncated.pt", "not a readable torch checkpoint"),
                          ("text.pt", "not a readable torch checkpoint"),
                          ("other.pt", "neither an igm_fast encoder"),
                          ("mismatch.pt", "do not match the encoder architecture"),
                          ("missing.pt", "not found")):
        with pytest.raises(InputError, match=message) as err:
            load_encoder(tmp_path / name)
        assert name in str(err.value)


def test_condition_keeps_visible_tokens_and_fills_masked_with_their_mean():
    z = torch.tensor([[[1.0, 2.0], [3.0, 6.0]]])  # 1 row, 2 visible tokens
    keep = torch.tensor([[0, 2]])
    out = condition(z, keep, num_tokens=4)
    want = torch.tensor([[[1.0, 2.0], [2.0, 4.0], [3.0, 6.0], [2.0, 4.0]]])
    assert torch.equal(out, want)
    assert condition(z, None, 2) is z


def test_adapter_matches_highpass_formula_float64():
    adapter = MDFFAdapter(D, eta=0.5, kernels="eager").double()
    z = torch.randn(3, 10, D, dtype=torch.float64)
    s = 1 / math.sqrt(D)
    want = torch.empty_like(z)
    for b in range(3):  # per body: z_hat = (1+eta) z - eta softmax(s z z^T) z
        attn = torch.softmax(s * z[b] @ z[b].T, dim=1)
        want[b] = 1.5 * z[b] - 0.5 * attn @ z[b]
    torch.testing.assert_close(adapter(z), adapter.proj(adapter.norm(want)))


def test_generator_starts_at_zero_and_trains_every_parameter():
    gen = Generator(V, T, TP, D, depth=2, heads=2, kernels="eager")
    x_t, t, cond = torch.randn(4, 10, 3 * TP), torch.randint(0, 1000, (4,)), torch.randn(4, 10, D)
    assert torch.equal(gen(x_t, t, cond), torch.zeros(4, 10, 3 * TP))  # AdaLN-Zero + zero head
    perturb(gen)
    out = gen(x_t, t, cond)
    assert out.shape == x_t.shape
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.parameters())


def test_generator_block_matches_adaln_zero_formula_float64():
    gen = Generator(V, T, TP, D, depth=1, heads=2, kernels="eager").double()
    perturb(gen)
    block = gen.blocks[0]
    x, c = torch.randn(2, 10, D, dtype=torch.float64), torch.randn(2, 10, D, dtype=torch.float64)
    mod = block.adaLN_modulation[1](c * torch.sigmoid(c))  # SiLU then Linear, per token
    shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)

    def ln(a):
        return (a - a.mean(-1, keepdim=True)) / torch.sqrt(a.var(-1, unbiased=False, keepdim=True) + 1e-6)

    h = x + gate1 * block.attn(ln(x) * (1 + scale1) + shift1)
    want = h + gate2 * block.mlp(ln(h) * (1 + scale2) + shift2)
    torch.testing.assert_close(block(x, c), want)


def test_igm_losses_and_gradients_reach_every_part():
    model = IGM(V, T, TP, D, 2, 2, gen_depth=1, mask_ratio=0.5, kernels="eager")
    perturb(model.generator)
    perturb(model.encoder.t_embedder)
    losses = model(torch.randn(3, 3, T, V, 2))
    assert set(losses) == {"loss", "loss_gen", "loss_feat", "loss_dist"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    for part in model.encoder, model.adapter, model.generator:
        assert all(p.grad is not None for p in part.parameters())


@pytest.mark.parametrize("kernels", ["triton"])
def test_igm_step_same_with_triton_kernels(kernels):
    """The model's fused-op path (Triton; interpreter on CPU) gives the eager path's losses."""
    pytest.importorskip("triton")
    for op in ("mdff", "adaln", "similarity_kl"):
        pytest.importorskip(f"igm_fast.kernels.{op}", reason=f"Triton kernel igm_fast.kernels.{op} not present")
    dim = 32  # a width the MDFF kernel supports
    eager = IGM(V, T, TP, dim, 1, 2, gen_depth=1, mask_ratio=0.5, kernels="eager")
    perturb(eager.generator)
    fused = IGM(V, T, TP, dim, 1, 2, gen_depth=1, mask_ratio=0.5, kernels=kernels)
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, T, V, 2)
    torch.manual_seed(1)
    want = eager(x)
    torch.manual_seed(1)
    got = fused(x)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)
