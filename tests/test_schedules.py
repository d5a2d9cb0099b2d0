"""LR schedules: shapes and exact endpoints of every kind."""

import math

import pytest

from codemix.config.recipe_schema import ScheduleSection
from codemix.config.schedule_steps import decay_steps, warmup_steps
from codemix.train.schedules import lr_at

PEAK = 3e-3


def curve(schedule: ScheduleSection, total: int) -> list[float]:
    return [lr_at(step, total, schedule, PEAK) for step in range(total)]


def test_warmup_is_a_fraction_below_one_and_a_step_count_otherwise():
    assert warmup_steps(ScheduleSection(warmup=0.1), 80) == 8
    assert warmup_steps(ScheduleSection(warmup=0.028), 80) == 2
    assert warmup_steps(ScheduleSection(warmup=1325.0), 47_700) == 1325
    assert warmup_steps(ScheduleSection(warmup=1.0), 80) == 1
    assert warmup_steps(ScheduleSection(warmup=0.0), 80) == 0


def test_warmup_rises_linearly_from_zero_and_reaches_the_peak_on_its_last_step():
    lrs = curve(ScheduleSection(kind="constant", warmup=4.0), 10)
    assert lrs[:4] == [PEAK * 1 / 4, PEAK * 2 / 4, PEAK * 3 / 4, PEAK]
    assert lrs[4:] == [PEAK] * 6


def test_cosine_falls_from_the_peak_to_exactly_min_lr_on_the_last_step():
    schedule = ScheduleSection(kind="cosine", warmup=10.0, min_lr=3e-4)
    lrs = curve(schedule, 110)
    assert lrs[9] == PEAK
    assert lrs[-1] == 3e-4
    decay = lrs[10:]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    # Halfway through the 100 decay steps the cosine is at the mean of peak and floor.
    assert decay[49] == pytest.approx((PEAK + 3e-4) / 2, rel=1e-12)
    assert decay[0] == pytest.approx(3e-4 + (PEAK - 3e-4) * 0.5 * (1 + math.cos(math.pi / 100)), rel=1e-12)


def test_linear_anneals_in_equal_steps_to_exactly_final_lr():
    schedule = ScheduleSection(kind="linear", warmup=0.0, final_lr=1e-6)
    lrs = [lr_at(step, 16, schedule, 3e-4) for step in range(16)]
    assert lrs[-1] == 1e-6
    gaps = [a - b for a, b in zip(lrs, lrs[1:])]
    assert gaps == pytest.approx([(3e-4 - 1e-6) / 16] * 15, rel=1e-9)
    assert lrs[0] == pytest.approx(3e-4 - (3e-4 - 1e-6) / 16, rel=1e-12)


def test_wsd_holds_the_peak_then_decays_over_its_fraction_to_final_lr():
    schedule = ScheduleSection(kind="wsd", warmup=5.0, decay_fraction=0.2, final_lr=0.0)
    lrs = curve(schedule, 100)
    assert decay_steps(schedule, 100) == 20
    assert lrs[4:80] == [PEAK] * 76
    assert lrs[80:] == pytest.approx([PEAK * (20 - k) / 20 for k in range(1, 21)], rel=1e-12)
    assert lrs[-1] == 0.0


def test_steps_past_the_end_keep_the_final_value():
    linear = ScheduleSection(kind="linear", final_lr=1e-6)
    assert lr_at(16, 16, linear, PEAK) == 1e-6
    assert lr_at(100, 16, ScheduleSection(kind="cosine", min_lr=1e-5), PEAK) == 1e-5
    assert lr_at(16, 16, ScheduleSection(kind="constant"), PEAK) == PEAK


@pytest.mark.parametrize("schedule, total", [
    (ScheduleSection(kind="cosine", warmup=16.0), 16),      # no step left to decay
    (ScheduleSection(kind="wsd", warmup=10.0, decay_fraction=0.5), 16),
])
def test_a_schedule_that_does_not_fit_the_stage_is_refused(schedule, total):
    with pytest.raises(ValueError, match="does not fit"):
        lr_at(0, total, schedule, PEAK)


def test_negative_steps_are_refused():
    with pytest.raises(ValueError):
        lr_at(-1, 10, ScheduleSection(), PEAK)
