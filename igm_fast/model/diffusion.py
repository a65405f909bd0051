"""Gaussian diffusion for training: noise schedules, q_sample, one-step x0 estimate.

1000 steps, epsilon prediction, t ~ U{0, ..., steps-1}. Schedules are given as abar(s) for
s in [0, 1] and discretised as guided diffusion's `betas_for_alpha_bar`
(beta_i = min(1 - abar((i+1)/n) / abar(i/n), 0.999)):
- inverse_cosine (MacDiff's default, `['inverse_cosine', tau]` in its configs, tau = 1):
  abar(s) = c0 (1 - s)(1 + tau) - tau cos^2((s + 0.008) / 1.008 * pi/2), c0 = cos^2(0.008/1.008 * pi/2).
  abar falls almost linearly: below the cosine schedule over the first half of the steps, well
  above it over the second, so even large t keep some signal and x_t never reduces to the noise
  alone (abar at t = 500 / 750 / 900 of 1000: 0.51 / 0.36 / 0.18; cosine: 0.49 / 0.15 / 0.02)
- cosine (Nichol & Dhariwal): abar(s) = cos^2((s + 0.008) / 1.008 * pi/2)
- linear (DDPM): beta linear from 1e-4 to 0.02 (scaled by 1000 / steps)
"""
import math

import torch
import torch.nn as nn

SCHEDULES = ("inverse_cosine", "cosine", "linear")
MAX_BETA = 0.999


def _cosine_abar(s):
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


def _inverse_cosine_abar(s, tau):
    return _cosine_abar(0.0) * (1 - s) * (1 + tau) - tau * _cosine_abar(s)


def make_betas(schedule, steps, tau=1.0):
    """float64 (steps,) betas of a named schedule (tau: the inverse_cosine parameter)."""
    if schedule == "linear":
        scale = 1000 / steps
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
    if schedule == "cosine":
        abar = _cosine_abar
    elif schedule == "inverse_cosine":
        def abar(s):
            return _inverse_cosine_abar(s, tau)
    else:
        raise ValueError(f"unknown noise schedule {schedule!r}; expected one of {SCHEDULES}")
    return torch.tensor([min(1 - abar((i + 1) / steps) / abar(i / steps), MAX_BETA) for i in range(steps)],
                        dtype=torch.float64)


class Diffusion(nn.Module):
    def __init__(self, schedule="inverse_cosine", steps=1000, tau=1.0):
        super().__init__()
        self.steps = steps
        alphas_cumprod = torch.cumprod(1 - make_betas(schedule, steps, tau), dim=0)
        # Derived from the config, so not saved in checkpoints.
        self.register_buffer("abar", alphas_cumprod.float(), persistent=False)
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
