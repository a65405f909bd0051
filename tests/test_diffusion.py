"""Noise schedules against their closed forms (float64), q_sample, and the one-step x0 estimate."""
import math

import pytest
import torch

from igm_fast.model.diffusion import MAX_BETA, SCHEDULES, Diffusion, make_betas

STEPS = 1000


def abar_table(d):
    return d.sqrt_abar.double() ** 2


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_abar_is_monotone_decreasing_from_one_to_near_zero(schedule):
    abar = abar_table(Diffusion(schedule, STEPS))
    assert abar.shape == (STEPS,)
    assert (abar[1:] < abar[:-1]).all()
    assert 0.99 < abar[0] < 1 and 0 < abar[-1] < 1e-3
    torch.testing.assert_close(1 - abar, Diffusion(schedule, STEPS).sqrt_one_minus_abar.double() ** 2,
                               rtol=0, atol=1e-6)


def test_linear_betas_endpoints():
    betas = make_betas("linear", STEPS)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert make_betas("linear", 500)[-1].item() == pytest.approx(0.04)  # scaled to the step count


@pytest.mark.parametrize("schedule, abar_of_s", [
    ("cosine", lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2),
    # MacDiff's, tau = 1: 2 c0 (1 - s) - cos^2(...), over its value at s = 0 (which is c0)
    ("inverse_cosine", lambda s: 2 * (1 - s) - math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
     / math.cos(0.008 / 1.008 * math.pi / 2) ** 2),
])
def test_abar_follows_its_closed_form_until_the_beta_cap(schedule, abar_of_s):
    betas = make_betas(schedule, STEPS)
    abar = torch.cumprod(1 - betas, 0)
    capped = int((betas >= MAX_BETA).nonzero()[0]) if (betas >= MAX_BETA).any() else STEPS
    assert capped >= 990  # only the very last steps hit the cap
    for t in (0, 1, 100, 500, 900, capped - 1):
        assert abar[t].item() == pytest.approx(abar_of_s((t + 1) / STEPS), rel=1e-9, abs=1e-12)


def test_inverse_cosine_mirrors_cosine():
    """Noisier than cosine over the first half of the steps, more signal over the second (abar
    falls almost linearly): inv - cos = 2 (1 - s - cos^2), zero near s = 0.48."""
    inv, cos = abar_table(Diffusion("inverse_cosine")), abar_table(Diffusion("cosine"))
    assert (inv[10:450] < cos[10:450]).all() and (inv[500:-10] > cos[500:-10]).all()


def test_inverse_cosine_reproduces_macdiffs_table():
    """abar at t = 500 / 750 / 900 of 1000 as MacDiff's guided diffusion builds it (issue 9: about
    0.51 / 0.36 / 0.18), recomputed here by hand: abar_t = prod_{i<=t} (1 - beta_i) telescopes to
    f((t+1)/1000) / f(0) while no beta is capped, f(s) = c0 (1-s)(1+tau) - tau cos^2((s+0.008)/1.008 pi/2)."""
    c0 = math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    for tau in (1.0, 0.5):
        f = lambda s: c0 * (1 - s) * (1 + tau) - tau * math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        abar = abar_table(Diffusion("inverse_cosine", STEPS, tau))
        for t in (0, 500, 750, 900):
            assert abar[t].item() == pytest.approx(f((t + 1) / STEPS) / f(0), rel=1e-5)
    abar = abar_table(Diffusion("inverse_cosine", STEPS, 1.0))
    # the issue quotes f(t / 1000) / f(0): 0.51 / 0.36 / 0.18; index t of the table is one step later
    assert [abar[t].item() for t in (500, 750, 900)] == pytest.approx([0.51, 0.36, 0.18], abs=0.01)


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        Diffusion("quadratic")


def test_q_sample_matches_formula_and_x0_estimate_inverts_it():
    d = Diffusion("inverse_cosine")
    x0 = torch.randn(6, 10, 12)
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 1, 250, 500, 900, 999])
    x_t = d.q_sample(x0, t, eps)
    abar = abar_table(d)[t].view(-1, 1, 1)
    want = abar.sqrt() * x0.double() + (1 - abar).sqrt() * eps.double()
    torch.testing.assert_close(x_t.double(), want, rtol=1e-5, atol=1e-5)
    # eps_hat = eps recovers x0 (up to float32 rounding, amplified by 1/sqrt(abar) at the last steps)
    x0_hat = d.predict_x0(x_t, t, eps)
    torch.testing.assert_close(x0_hat[:5], x0[:5], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x0_hat[5:], x0[5:], rtol=0, atol=0.5)
    x0_hat64 = (want - (1 - abar).sqrt() * eps.double()) / abar.sqrt()
    torch.testing.assert_close(x0_hat64, x0.double())


def test_sample_t_covers_the_range():
    t = Diffusion().sample_t(20000, "cpu")
    assert t.min() == 0 and t.max() == STEPS - 1 and t.dtype == torch.long
    assert abs(t.float().mean().item() - (STEPS - 1) / 2) < 10
