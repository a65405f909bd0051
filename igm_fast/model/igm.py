"""IGM: the whole pretraining model and its losses; `forward(x)` is one training step's math.

Reads as the paper's equations, in order:
  encode (masked) -> condition z -> MDFF h(z) -> noise x_t -> generate eps_hat -> x0_hat
  -> re-encode x0_hat -> gen + lambda_feat * ide_feat + lambda_dist * ide_dist.
Everything runs in patch space (B = N*M body rows, L tokens, 3*t_patch values per token):
`patchify` is a pure reshuffle, so noise, MSE and x0_hat mean the same there as on (N,3,T,V,M).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from igm_fast.dist import all_gather_cat
from igm_fast.model.adapter import MDFFAdapter
from igm_fast.model.diffusion import Diffusion
from igm_fast.model.encoder import Encoder, patchify, pool
from igm_fast.model.generator import Generator
from igm_fast.ops import similarity_kl

GEN_LOSS_TOKENS = ("all", "masked")


def condition(z_visible, keep, num_tokens):
    """Per-token condition (B, L, D): visible positions keep their encoder output, masked
    positions get the mean of the visible tokens of the same body (MacDiff)."""
    if keep is None:
        return z_visible
    B, _, D = z_visible.shape
    mean = z_visible.mean(dim=1, keepdim=True).expand(B, num_tokens, D)
    return mean.scatter(1, keep[..., None].expand(-1, -1, D), z_visible)


def feature_idempotency(g_x, g_hat):
    """ide_feat = mean_i (1 - cos(g_x_i, g_hat_i)); inputs already L2-normalised."""
    return (1 - (g_x * g_hat).sum(dim=-1)).mean()


class IGM(nn.Module):
    def __init__(self, num_joints, num_frames=120, t_patch=4, dim=256, depth=8, heads=8, mlp_ratio=4.0,
                 gen_depth=5, mask_ratio=0.9, mdff_eta=0.5, mdff_scale=None, schedule="inverse_cosine",
                 diffusion_steps=1000, gen_loss_tokens="all", lambda_feat=1.0, lambda_dist=1.0, tau=0.1,
                 stop_grad_target=True, kernels="auto"):
        super().__init__()
        if gen_loss_tokens not in GEN_LOSS_TOKENS:
            raise ValueError(f"gen_loss_tokens={gen_loss_tokens!r}; expected one of {GEN_LOSS_TOKENS}")
        if gen_loss_tokens == "masked" and mask_ratio <= 0:
            raise ValueError("gen_loss_tokens='masked' needs mask_ratio > 0")
        self.t_patch, self.mask_ratio, self.gen_loss_tokens = t_patch, mask_ratio, gen_loss_tokens
        self.lambda_feat, self.lambda_dist, self.tau = lambda_feat, lambda_dist, tau
        self.stop_grad_target, self.kernels = stop_grad_target, kernels
        self.encoder = Encoder(num_joints, num_frames, t_patch, dim, depth, heads, mlp_ratio)
        self.adapter = MDFFAdapter(dim, mdff_eta, mdff_scale, kernels)
        self.generator = Generator(num_joints, num_frames, t_patch, dim, gen_depth, heads, mlp_ratio, kernels)
        self.diffusion = Diffusion(schedule, diffusion_steps)

    def forward(self, x):
        """x (N, 3, T, V, M) augmented clean batch -> dict of scalar losses (`loss` is the total)."""
        N = x.shape[0]
        x0 = patchify(x, self.t_patch)  # (B, L, P)
        B, L, _ = x0.shape

        # 1. encode the visible tokens of the clean sequence
        keep = self.encoder.sample_keep(B, self.mask_ratio, x.device) if self.mask_ratio > 0 else None
        z_visible = self.encoder.encode_patches(x0, keep)
        # 2. condition z and 3. MDFF adapter h(z)
        cond = self.adapter(condition(z_visible, keep, L))
        # 4. noise: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, one t per body sequence
        t = self.diffusion.sample_t(B, x.device)
        eps = torch.randn_like(x0)
        x_t = self.diffusion.q_sample(x0, t, eps)
        # 5. generate: eps_hat = g(x_t, t, h(z)); gen = MSE(eps_hat, eps)
        eps_hat = self.generator(x_t, t, cond)
        err = (eps_hat.float() - eps).pow(2).mean(dim=-1)  # (B, L)
        if self.gen_loss_tokens == "masked":
            masked = torch.ones_like(err).scatter(1, keep, 0.0)
            loss_gen = (err * masked).sum() / masked.sum()
        else:
            loss_gen = err.mean()
        # 6. one-step estimate, clamped to the clean batch's range (detached: a bound, not a target);
        #    at large t, 1/sqrt(abar_t) would otherwise blow eps_hat's error up by orders of magnitude.
        lo, hi = x0.detach().amin(), x0.detach().amax()
        x0_hat = self.diffusion.predict_x0(x_t, t, eps_hat).clamp(lo, hi)
        # 7. re-encode x0_hat with its timestep, on the same visible tokens as the clean branch:
        #    both pooled features then average the same positions, so they differ only by
        #    what the generator rebuilt, and the re-encode costs as little as the masked encode.
        g_x = F.normalize(pool(z_visible, N).float(), dim=-1)
        g_hat = F.normalize(pool(self.encoder.encode_patches(x0_hat, keep, t), N).float(), dim=-1)
        target = g_x.detach() if self.stop_grad_target else g_x
        # 8. idempotency losses: features, and their similarity distribution over the global batch
        loss_feat = feature_idempotency(target, g_hat)
        keys = all_gather_cat(g_x.detach())
        loss_dist = similarity_kl(g_x.detach(), g_hat, keys, self.tau, kernels=self.kernels)
        loss = loss_gen + self.lambda_feat * loss_feat + self.lambda_dist * loss_dist
        return {"loss": loss, "loss_gen": loss_gen, "loss_feat": loss_feat, "loss_dist": loss_dist}
