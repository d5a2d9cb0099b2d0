"""Training: stages from recipes on a Lightning Trainer, LR schedules, lineage and resume.

Kept import-light (no Lightning here) so `codemix data ...` and the recipe loader stay fast."""
