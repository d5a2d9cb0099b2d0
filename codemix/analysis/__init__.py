"""Reports over evaluated stages: the study's Table 2, deltas with bootstrap intervals, loss curves."""
