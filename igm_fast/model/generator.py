"""Generator g: a DiT over the L tokens of the noisy body sequence x_t, predicting the noise.

Every block is AdaLN-Zero with per-token modulation: shift/scale/gate come from
c = h(z) + timestep embedding, one vector per token, so each token of x_t is told what the
encoder saw at its own position. Modulation layers and the output layer start at zero (DiT),
so g starts as the identity map on its tokens and predicts eps_hat = 0.
"""
import torch.nn as nn

from igm_fast.model.layers import Attention, Mlp, SkeletonTokenizer, TimestepEmbedder, init_linear
from igm_fast.ops import adaln_modulate, gated_residual, gated_residual_modulate


class GeneratorBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, kernels):
        super().__init__()
        self.kernels = kernels
        self.attn = Attention(dim, heads)
        self.mlp = Mlp(dim, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        k = self.kernels
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=-1)
        h = self.attn(adaln_modulate(x, shift_msa, scale_msa, kernels=k))
        # the attention residual and the MLP's modulated LayerNorm in one kernel
        x, h = gated_residual_modulate(x, gate_msa, h, shift_mlp, scale_mlp, kernels=k)
        return gated_residual(x, gate_mlp, self.mlp(h), kernels=k)


class FinalLayer(nn.Module):
    def __init__(self, dim, patch_dim, kernels):
        super().__init__()
        self.kernels = kernels
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_dim)

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(adaln_modulate(x, shift, scale, kernels=self.kernels))


class Generator(nn.Module):
    def __init__(self, num_joints, num_frames=120, t_patch=4, dim=256, depth=5, heads=8, mlp_ratio=4.0,
                 kernels="auto"):
        super().__init__()
        self.tokenizer = SkeletonTokenizer(num_joints, num_frames, t_patch, dim)
        self.t_embedder = TimestepEmbedder(dim)
        self.blocks = nn.ModuleList(GeneratorBlock(dim, heads, mlp_ratio, kernels) for _ in range(depth))
        self.final_layer = FinalLayer(dim, 3 * t_patch, kernels)
        self.initialize_weights()

    def initialize_weights(self):
        self.apply(init_linear)
        for layer in self.t_embedder.mlp[0], self.t_embedder.mlp[2]:
            nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:  # AdaLN-Zero
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in self.final_layer.adaLN_modulation[-1], self.final_layer.linear:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x_t, t, cond):
        """x_t (B, L, 3*t_patch) noisy patches, t (B,) timesteps, cond (B, L, D) = h(z) -> eps_hat like x_t."""
        x = self.tokenizer(x_t)
        c = cond + self.t_embedder(t)[:, None]
        for block in self.blocks:
            x = block(x, c)
        return self.final_layer(x, c)
