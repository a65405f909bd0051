"""Encoder f: MAMP-style skeleton ViT, plus its export format (encoder.pt).

x (N, 3, T, V, M) -> standardised per axis with the training split's statistics (MacDiff's
input_mean / input_var; they are part of the encoder's config, so encoder.pt carries them to
every protocol) -> each body is its own sequence (B = N*M rows) -> patches of `t_patch`
frames x 3 coords of one joint -> L = (T / t_patch) * V tokens (time-major, joint-minor).
Pretraining encodes only the visible tokens (MAE-style), which is what makes a 0.9 mask
ratio cheap. `features(x, readout)` is the downstream representation, no masking: `pooled`
= mean over bodies, time and joints (D); `joints` = mean over bodies and time, joints
concatenated (V*D, MacDiff's linear probe and MAMP's finetune head keep the joints apart).
"""
import torch
import torch.nn as nn

from igm_fast.io import InputError, atomic_torch_save, load_checkpoint
from igm_fast.model.layers import Attention, DropPath, Mlp, SkeletonTokenizer, TimestepEmbedder, init_linear

ENCODER_FORMAT = "igm_fast-encoder"
LEGACY_TOKENIZER_KEYS = ("patch_embed", "time_pos", "joint_pos")


def patchify(x, t_patch):
    """(N, 3, T, V, M) -> (N*M, (T/t_patch)*V, t_patch*3): one row per body, one token per joint patch."""
    N, C, T, V, M = x.shape
    if T % t_patch:
        raise ValueError(f"{T} frames are not divisible by t_patch={t_patch}")
    x = x.permute(0, 4, 2, 3, 1).reshape(N * M, T // t_patch, t_patch, V, C)
    return x.transpose(2, 3).reshape(N * M, (T // t_patch) * V, t_patch * C)


def unpatchify(patches, num_bodies, num_joints, t_patch):
    """Inverse of `patchify`: (N*M, L, t_patch*3) -> (N, 3, T, V, M)."""
    B, L, P = patches.shape
    N, Tp, C = B // num_bodies, L // num_joints, P // t_patch
    x = patches.reshape(N, num_bodies, Tp, num_joints, t_patch, C).transpose(3, 4)
    return x.reshape(N, num_bodies, Tp * t_patch, num_joints, C).permute(0, 4, 2, 3, 1).contiguous()


def gather_tokens(tokens, keep):
    """tokens (B, L, D), keep (B, K) token indices -> (B, K, D)."""
    return torch.gather(tokens, 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))


READOUTS = ("pooled", "joints")


def pool(tokens, num_samples):
    """(N*M, K, D) -> (N, D): mean over bodies and tokens of each sample."""
    return tokens.reshape(num_samples, -1, tokens.shape[-1]).mean(1)


class Block(nn.Module):
    """Pre-norm ViT block."""

    def __init__(self, dim, heads, mlp_ratio, drop_path):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Encoder(nn.Module):
    def __init__(self, num_joints, num_frames=120, t_patch=4, dim=256, depth=8, heads=8, mlp_ratio=4.0,
                 drop_path=0.0, input_mean=(0.0, 0.0, 0.0), input_std=(1.0, 1.0, 1.0)):
        super().__init__()
        if num_frames % t_patch:
            raise ValueError(f"num_frames={num_frames} is not divisible by t_patch={t_patch}")
        input_mean, input_std = [float(v) for v in input_mean], [float(v) for v in input_std]
        if len(input_mean) != 3 or len(input_std) != 3 or min(input_std) <= 0:
            raise ValueError(f"input_mean / input_std must be 3 numbers (std > 0), got {input_mean}, {input_std}")
        self.config = dict(num_joints=num_joints, num_frames=num_frames, t_patch=t_patch, dim=dim, depth=depth,
                           heads=heads, mlp_ratio=mlp_ratio, drop_path=drop_path, input_mean=input_mean,
                           input_std=input_std)
        # Derived from the config (saved with it), so not part of the state dict.
        self.register_buffer("input_mean", torch.tensor(input_mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(input_std).view(1, 3, 1, 1, 1), persistent=False)
        self.t_patch = t_patch
        self.num_tokens = (num_frames // t_patch) * num_joints
        self.tokenizer = SkeletonTokenizer(num_joints, num_frames, t_patch, dim)
        # Re-encoding the one-step estimate x0_hat tells the encoder its noise level t (IGM's t').
        self.t_embedder = TimestepEmbedder(dim)
        rates = torch.linspace(0, drop_path, depth).tolist()  # stochastic depth grows with depth
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(dim)
        self.initialize_weights()

    def initialize_weights(self):
        self.apply(init_linear)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        # Zero output layer: at initialisation the timestep embedding changes nothing.
        nn.init.zeros_(self.t_embedder.mlp[2].weight)
        nn.init.zeros_(self.t_embedder.mlp[2].bias)

    def normalize(self, x):
        """(N, 3, T, V, M) skeletons in dataset units -> standardised per axis."""
        return (x - self.input_mean) / self.input_std

    def denormalize(self, x):
        """Inverse of normalize: standardised (N, 3, T, V, M) -> dataset units."""
        return x * self.input_std + self.input_mean

    def sample_keep(self, rows, mask_ratio, device, generator=None):
        """MAE-style random masking: indices (rows, K) of the visible tokens of each row, sorted."""
        num_keep = max(1, int(self.num_tokens * (1 - mask_ratio)))
        noise = torch.rand(rows, self.num_tokens, device=device, generator=generator)
        return noise.argsort(dim=1)[:, :num_keep].sort(dim=1).values

    def timestep_embedding(self, t):
        # Minus the embedding of t=0 so that f(x, t=0) == f(x) exactly, at any point of training.
        return self.t_embedder(t) - self.t_embedder(torch.zeros_like(t))

    def encode_patches(self, patches, keep=None, t=None):
        """patches (B, L, 3*t_patch) -> tokens (B, K, D) of the kept positions (all when keep is None)."""
        tokens = self.tokenizer(patches)
        if t is not None:
            tokens = tokens + self.timestep_embedding(t)[:, None]
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, x, mask_ratio=0.0, t=None, keep=None):
        """x (N, 3, T, V, M) -> per-token features (N*M, K, D); K = L, or the visible count when masking."""
        patches = patchify(self.normalize(x), self.t_patch)
        if keep is None and mask_ratio > 0:
            keep = self.sample_keep(patches.shape[0], mask_ratio, x.device)
        return self.encode_patches(patches, keep, t)

    def feature_dim(self, readout="pooled"):
        return self.config["dim"] * (self.config["num_joints"] if readout == "joints" else 1)

    def features(self, x, readout="pooled"):
        """pooled (N, D): mean over bodies, time and joints; joints (N, V*D): mean over bodies and time."""
        if readout not in READOUTS:
            raise ValueError(f"readout={readout!r}; expected one of {READOUTS}")
        tokens = self(x)
        if readout == "pooled":
            return pool(tokens, x.shape[0])
        N, V = x.shape[0], self.config["num_joints"]
        return tokens.reshape(N, -1, V, tokens.shape[-1]).mean(1).flatten(1)  # rows: bodies x time, joint-minor


def save_encoder(encoder, path):
    atomic_torch_save({"format": ENCODER_FORMAT, "config": dict(encoder.config),
                       "state_dict": {k: v.detach().cpu() for k, v in encoder.state_dict().items()}}, path)


def load_encoder(path, **overrides):
    """An Encoder from `encoder.pt` or from a training checkpoint (checkpoint_*.pt).

    `overrides` change non-architectural ctor args, e.g. `drop_path=0.3` for finetuning.
    """
    obj = load_checkpoint(path)
    if obj.get("format") == ENCODER_FORMAT:
        config, state = obj.get("config"), obj.get("state_dict")
    elif "model" in obj and "encoder_config" in obj:
        config = obj["encoder_config"]
        state = {k[len("encoder."):]: v for k, v in obj["model"].items() if k.startswith("encoder.")}
    else:
        raise InputError(f"{path}: neither an igm_fast encoder (format {ENCODER_FORMAT!r}) nor an igm_fast "
                         f"training checkpoint (keys 'model', 'encoder_config'); found keys {sorted(obj)}")
    if not isinstance(config, dict) or not isinstance(state, dict) or not state:
        raise InputError(f"{path}: encoder config or weights missing or malformed")
    # Files written before the encoder and generator shared SkeletonTokenizer keep its weights at the top.
    state = {f"tokenizer.{k}" if k.split(".")[0] in LEGACY_TOKENIZER_KEYS else k: v for k, v in state.items()}
    try:
        encoder = Encoder(**{**config, **overrides})
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: invalid encoder config {config}: {e}") from None
    try:
        encoder.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(f"{path}: weights do not match the encoder architecture {config}: {e}") from None
    return encoder
