"""A schedule's warmup and decay in optimizer steps: stage arithmetic the recipe checks and plans use,
below the LR functions of train/schedules.py that read it."""

from codemix.config.recipe_schema import ScheduleSection


def warmup_steps(schedule: ScheduleSection, total_steps: int) -> int:
    """schedule.warmup in steps: a value below 1 is a fraction of total_steps, else a step count."""
    if schedule.warmup < 1:
        return round(schedule.warmup * total_steps)
    return int(schedule.warmup)


def decay_steps(schedule: ScheduleSection, total_steps: int) -> int:
    """Steps at the end of the stage that decay the LR: wsd's decay_fraction of them, none for
    constant, every step after warmup for cosine and linear."""
    if schedule.kind == "wsd":
        return round(schedule.decay_fraction * total_steps)
    if schedule.kind == "constant":
        return 0
    return total_steps - warmup_steps(schedule, total_steps)
