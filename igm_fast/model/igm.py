"""IGM: the whole pretraining model and its losses; `forward(x)` is one training step's math.

Reads as the paper's equations, in order:
  normalise -> encode (masked) -> condition z -> MDFF h(z) -> noise x_t -> generate eps_hat
  -> x0_hat -> re-encode x0_hat -> gen + lambda_uni * uni + lambda_feat * ide_feat + lambda_dist * ide_dist.
Everything runs in patch space (B = N*M body rows, L tokens, 3*t_patch values per token):
`patchify` is a pure reshuffle, so noise, MSE and x0_hat mean the same there as on (N,3,T,V,M).
The diffusion objective is MacDiff's (schedule, standardised input, masked-token noise loss,
condition dropout, token uniformity); the idempotency terms are IGM's.
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
# Which tokens of x0_hat the re-encoding sees: the clean branch's visible ones, a fresh random
# mask of the same ratio, or all L tokens.
IDE_REENCODE = ("same", "fresh", "all")


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


def uniformity(tokens, t=2.0):
    """Token uniformity (Wang & Isola): log mean_{i != j} exp(-t ||u_i - u_j||^2) over the
    L2-normalised tokens u of each row of (B, K, D), averaged over rows (MacDiff, t = 2)."""
    u = F.normalize(tokens.float(), dim=-1)
    K = u.shape[1]
    sq = (2 - 2 * u @ u.transpose(1, 2)).clamp_min(0)  # ||u_i - u_j||^2 of unit vectors
    off_diagonal = ~torch.eye(K, dtype=torch.bool, device=u.device)
    return sq[:, off_diagonal].mul(-t).exp().mean(dim=1).log().mean()  # (B, K*(K-1)) pairs per row


class PatchEncoder(nn.Module):
    """encoder.encode_patches as a forward, for torch.func.functional_call."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, patches, keep, t):
        return self.encoder.encode_patches(patches, keep, t)


class IGM(nn.Module):
    def __init__(self, num_joints, num_frames=120, t_patch=4, dim=256, depth=8, heads=8, mlp_ratio=4.0,
                 gen_depth=5, mask_ratio=0.9, mdff_eta=0.5, mdff_scale=None, schedule="inverse_cosine",
                 diffusion_steps=1000, gen_loss_tokens="all", lambda_feat=1.0, lambda_dist=1.0, tau=0.1,
                 stop_grad_target=True, kernels="auto", *, schedule_tau=1.0, cond_drop=0.0, lambda_uni=0.0,
                 ide_reencode="same", ide_max_t=None, ide_encoder_grad=True, input_mean=(0.0, 0.0, 0.0), input_std=(1.0, 1.0, 1.0)):
        super().__init__()
        if gen_loss_tokens not in GEN_LOSS_TOKENS:
            raise ValueError(f"gen_loss_tokens={gen_loss_tokens!r}; expected one of {GEN_LOSS_TOKENS}")
        if gen_loss_tokens == "masked" and mask_ratio <= 0:
            raise ValueError("gen_loss_tokens='masked' needs mask_ratio > 0")
        if ide_reencode not in IDE_REENCODE:
            raise ValueError(f"ide_reencode={ide_reencode!r}; expected one of {IDE_REENCODE}")
        self.t_patch, self.mask_ratio, self.gen_loss_tokens = t_patch, mask_ratio, gen_loss_tokens
        self.lambda_feat, self.lambda_dist, self.lambda_uni, self.tau = lambda_feat, lambda_dist, lambda_uni, tau
        self.stop_grad_target, self.kernels, self.cond_drop = stop_grad_target, kernels, cond_drop
        self.ide_reencode, self.ide_encoder_grad = ide_reencode, ide_encoder_grad
        self.ide_max_t = diffusion_steps if ide_max_t is None else ide_max_t
        self.encoder = Encoder(num_joints, num_frames, t_patch, dim, depth, heads, mlp_ratio,
                               input_mean=input_mean, input_std=input_std)
        self.adapter = MDFFAdapter(dim, mdff_eta, mdff_scale, kernels)
        self.generator = Generator(num_joints, num_frames, t_patch, dim, gen_depth, heads, mlp_ratio, kernels)
        self.diffusion = Diffusion(schedule, diffusion_steps, schedule_tau)

    def reencode(self, patches, keep, t):
        """f(x0_hat, t). With ide_encoder_grad=False the encoder's weights are used detached: the
        idempotency gradient then reaches x0_hat (generator, adapter, and the clean encoder through
        the condition) but cannot make the re-encoder itself insensitive to its input."""
        if self.ide_encoder_grad:
            return self.encoder.encode_patches(patches, keep, t)
        frozen = {f"encoder.{name}": p.detach() for name, p in self.encoder.named_parameters()}
        return torch.func.functional_call(PatchEncoder(self.encoder), frozen, (patches, keep, t))

    def keep_indices(self, rows, device):
        return self.encoder.sample_keep(rows, self.mask_ratio, device) if self.mask_ratio > 0 else None

    def forward(self, x):
        """x (N, 3, T, V, M) augmented clean batch -> dict of scalar losses (`loss` is the total)."""
        N, M = x.shape[0], x.shape[-1]
        x0 = patchify(self.encoder.normalize(x), self.t_patch)  # (B, L, P), standardised: the diffusion target
        B, L, _ = x0.shape

        # 1. encode the visible tokens of the clean sequence
        keep = self.keep_indices(B, x.device)
        z_visible = self.encoder.encode_patches(x0, keep)
        # 2. condition z (dropped to zero for a random cond_drop of the bodies, MacDiff) and 3. MDFF h(z)
        z = condition(z_visible, keep, L)
        if self.training and self.cond_drop > 0:
            z = z * (torch.rand(B, 1, 1, device=x.device) >= self.cond_drop).to(z.dtype)
        cond = self.adapter(z)
        # 4. noise: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, one t per sample (shared by its bodies,
        #    so the sample's pooled re-encoded feature has one noise level)
        t_sample = self.diffusion.sample_t(N, x.device)
        t = t_sample.repeat_interleave(M)
        eps = torch.randn_like(x0)
        x_t = self.diffusion.q_sample(x0, t, eps)
        # 5. generate: eps_hat = g(x_t, t, h(z)); gen = MSE(eps_hat, eps) over all or the masked tokens
        eps_hat = self.generator(x_t, t, cond)
        err = (eps_hat.float() - eps).pow(2).mean(dim=-1)  # (B, L)
        if self.gen_loss_tokens == "masked":
            masked = torch.ones_like(err).scatter(1, keep, 0.0)
            loss_gen = (err * masked).sum() / masked.sum()
        else:
            loss_gen = err.mean()
        losses = {"loss_gen": loss_gen}
        if self.lambda_uni:
            losses["loss_uni"] = uniformity(z_visible)
        # 6. one-step estimate, clamped to the clean batch's range (detached: a bound, not a target);
        #    at large t, 1/sqrt(abar_t) would otherwise blow eps_hat's error up by orders of magnitude.
        lo, hi = x0.detach().amin(), x0.detach().amax()
        x0_hat = self.diffusion.predict_x0(x_t, t, eps_hat).clamp(lo, hi)
        # 7. re-encode x0_hat with its timestep (IGM's f(x0_hat, t)), only for the samples whose t is
        #    below ide_max_t: at larger t the one-step estimate is a blur that carries no signal.
        rows = (t_sample < self.ide_max_t).nonzero().squeeze(1)
        body_rows = (rows[:, None] * M + torch.arange(M, device=x.device)).reshape(-1)
        g_x = F.normalize(pool(z_visible, N).float(), dim=-1)
        keys = all_gather_cat(g_x.detach())  # on every rank, whatever its t: a collective
        zero = loss_gen.new_zeros(())
        if len(rows) == 0:
            loss_feat = loss_dist = zero
        else:
            if self.ide_reencode == "fresh":
                reencode_keep = self.keep_indices(len(body_rows), x.device)
            else:
                reencode_keep = keep[body_rows] if self.ide_reencode == "same" and keep is not None else None
            z_hat = self.reencode(x0_hat[body_rows], reencode_keep, t[body_rows])
            g_hat = F.normalize(pool(z_hat, len(rows)).float(), dim=-1)
            target = g_x[rows].detach() if self.stop_grad_target else g_x[rows]
            # 8. idempotency: features, and their similarity distribution over the global batch
            loss_feat = feature_idempotency(target, g_hat)
            loss_dist = similarity_kl(g_x[rows].detach(), g_hat, keys, self.tau, kernels=self.kernels)
        losses.update(loss_feat=loss_feat, loss_dist=loss_dist)
        losses["loss"] = (loss_gen + self.lambda_uni * losses.get("loss_uni", zero)
                          + self.lambda_feat * loss_feat + self.lambda_dist * loss_dist)
        return losses
