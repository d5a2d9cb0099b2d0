"""Evaluation: benchmark tasks, scoring, the code sandbox, win-rates and the results file."""
