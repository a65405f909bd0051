"""Gaussian diffusion for training: noise schedules, q_sample, one-step x0 estimate.

1000 steps, epsilon prediction, t ~ U{0, ..., steps-1}. Schedules are given as abar(s) for
s in [0, 1] and discretised as in improved DDPM (beta_i = 1 - abar((i+1)/n) / abar(i/n),
capped at 0.999 so the last step keeps a little signal):
- cosine (Nichol & Dhariwal): abar(s) = cos^2((s + 0.008) / 1.008 * pi/2)
- inverse_cosine (MacDiff's default; its exact formula was not available to us, this is our
  reading): abar(s) = 1 - sin(pi/2 * s), the cosine curve mirrored. Since
  1 - sin <= 1 - sin^2 = cos^2, it lies below the cosine schedule at every interior step:
  more steps at high noise, where the generator has to rely on the encoder's condition
- linear (DDPM): beta linear from 1e-4 to 0.02 (scaled by 1000 / steps)
"""
import math

import torch
import torch.nn as nn

SCHEDULES = ("inverse_cosine", "cosine", "linear")
MAX_BETA = 0.999


def _cosine_abar(s):
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


def make_betas(schedule, steps):
    """float64 (steps,) betas of a named schedule."""
    if schedule == "linear":
        scale = 1000 / steps
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
    if schedule == "cosine":
        abar = _cosine_abar
    elif schedule == "inverse_cosine":
        def abar(s):
            return 1 - math.sin(math.pi / 2 * s)
    else:
        raise ValueError(f"unknown noise schedule {schedule!r}; expected one of {SCHEDULES}")
    return torch.tensor([min(1 - abar((i + 1) / steps) / abar(i / steps), MAX_BETA) for i in range(steps)],
                        dtype=torch.float64)


class Diffusion(nn.Module):
    def __init__(self, schedule="inverse_cosine", steps=1000):
        super().__init__()
        self.steps = steps
        alphas_cumprod = torch.cumprod(1 - make_betas(schedule, steps), dim=0)
        # Derived from the config, so not saved in checkpoints.
        self.register_buffer("sqrt_abar", alphas_cumprod.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_one_minus_abar", (1 - alphas_cumprod).sqrt().float(), persistent=False)

    def sample_t(self, n, device):
        return torch.randint(0, self.steps, (n,), device=device)

    def _at(self, table, t, like):
        return table[t].reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)

    def q_sample(self, x0, t, noise):
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise; t (B,) indexes dim 0 of x0."""
        return self._at(self.sqrt_abar, t, x0) * x0 + self._at(self.sqrt_one_minus_abar, t, x0) * noise

    def predict_x0(self, x_t, t, eps_hat):
        """One-step estimate x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) (unclamped)."""
        return (x_t - self._at(self.sqrt_one_minus_abar, t, x_t) * eps_hat) / self._at(self.sqrt_abar, t, x_t)
