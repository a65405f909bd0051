import math

import pytest

from igm_fast.lr_schedule import warmup_cosine


def test_warmup_is_linear_from_zero():
    assert [warmup_cosine(s, 10, 110, 0.1) for s in (0, 5, 9)] == [0.0, 0.5, 0.9]


def test_cosine_runs_from_one_to_the_floor_and_stays_there():
    warmup, total, floor = 10, 110, 0.1
    assert warmup_cosine(10, warmup, total, floor) == 1.0
    assert warmup_cosine(60, warmup, total, floor) == pytest.approx(floor + (1 - floor) * 0.5)
    quarter = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi / 4))  # hand-computed at 1/4 of the decay
    assert warmup_cosine(35, warmup, total, floor) == pytest.approx(quarter)
    assert warmup_cosine(110, warmup, total, floor) == pytest.approx(floor)
    assert warmup_cosine(500, warmup, total, floor) == pytest.approx(floor)


def test_no_warmup_starts_at_the_full_rate():
    assert warmup_cosine(0, 0, 100) == 1.0
    assert warmup_cosine(100, 0, 100) == pytest.approx(0.0)
