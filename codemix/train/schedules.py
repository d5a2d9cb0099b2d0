"""Learning-rate schedules as pure functions of the optimizer step.

Conventions (the same for every kind):
- `step` is the 0-based index of the optimizer update the LR is used for; a stage has `total_steps`
  updates, 0 .. total_steps - 1. Steps past the end keep the final value (a scheduler may be asked
  once more after the last update).
- Warmup of W steps rises linearly from 0: step s < W gets peak * (s + 1) / W, so step W - 1 is at the
  peak and no update is wasted at LR 0.
- A decay over D steps that starts at step S has progress p = (step - S + 1) / D: its first step is
  already below the peak and its last step lands exactly on the end value.

Kinds:
- cosine:   warmup, then peak -> min_lr along half a cosine over the remaining steps.
- linear:   warmup, then a straight line peak -> final_lr (the study's cooldown: final_lr 1e-6).
- constant: warmup, then the peak.
- wsd:      warmup-stable-decay: warmup, the peak, then the last decay_fraction of the stage's steps
            decays linearly to final_lr.
"""

import math

from codemix.config.recipe_schema import ScheduleSection
from codemix.config.schedule_steps import decay_steps, warmup_steps


def lr_at(step: int, total_steps: int, schedule: ScheduleSection, peak_lr: float) -> float:
    """The learning rate for optimizer update `step` of a stage of `total_steps` updates."""
    if step < 0 or total_steps < 1:
        raise ValueError(f"need step >= 0 and total_steps >= 1, got step {step} of {total_steps}")
    warmup = warmup_steps(schedule, total_steps)
    decay = decay_steps(schedule, total_steps)
    if warmup + decay > total_steps or (decay == 0 and schedule.kind in ("cosine", "linear")):
        raise ValueError(f"{schedule.kind} schedule with {warmup} warmup and {decay} decay steps "
                         f"does not fit in {total_steps} steps")
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    decay_start = total_steps - decay
    if step < decay_start or decay == 0:
        return peak_lr
    remaining = 1.0 - min(1.0, (step - decay_start + 1) / decay)  # 1 at the peak, 0 at the end
    if schedule.kind == "cosine":
        return schedule.min_lr + (peak_lr - schedule.min_lr) * 0.5 * (1.0 - math.cos(math.pi * remaining))
    return schedule.final_lr + (peak_lr - schedule.final_lr) * remaining
