"""Trainer callbacks and loggers for a stage: throughput and MFU, a progress bar counted in tokens, and
the CSV + TensorBoard loggers.

Position in a stage is counted in tokens: tokens done = optimizer steps x global batch x seq_len."""

import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

# Peak dense 16-bit (bf16/fp16) tensor-core FLOP/s per device, from the vendors' data sheets.
# Matched in order against torch.cuda.get_device_name(), so specific names come before general ones.
PEAK_FLOPS_16BIT: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H200", 989e12),  # the H100 SXM's compute with more, faster memory
    ("H100", 989e12),  # SXM (reported as e.g. "NVIDIA H100 80GB HBM3")
    ("A100", 312e12),
)
SIXTEEN_BIT_PRECISIONS = ("bf16-mixed", "bf16-true", "16-mixed", "16-true")


def peak_flops(device: torch.device, precision: str) -> Optional[float]:
    """Peak FLOP/s of one device at `precision`, or None where the table has no figure (CPU, fp32,
    unlisted GPUs): MFU is then omitted rather than guessed."""
    if device.type != "cuda" or precision not in SIXTEEN_BIT_PRECISIONS:
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS_16BIT if key in name), None)


def log_step_metrics(trainer: "pl.Trainer", metrics: dict[str, float], step: int) -> None:
    """Hand one optimizer step's metrics to the loggers directly (every log_every_n_steps steps and the
    last), not through LightningModule.log: Lightning hands those over only after the step's checkpoint
    is written, so a kill right after a checkpoint would lose the rows of the step it holds."""
    if step % trainer.log_every_n_steps == 0 or step == trainer.max_steps - 1:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)


def is_step_boundary(trainer: "pl.Trainer", batch_idx: int) -> bool:
    """True when the micro-batch `batch_idx` completed an optimizer step (gradient accumulation)."""
    return (batch_idx + 1) % trainer.accumulate_grad_batches == 0


class ThroughputMonitor(Callback):
    """Logs perf/tokens_per_s, perf/flops_per_s and (when the device's peak is known) perf/mfu, each over
    a sliding window of optimizer steps so one slow step (compilation, a checkpoint) does not dominate.

    tokens_per_step and flops_per_token are for the whole job (all ranks); MFU divides by the peak of
    every device in the job."""

    def __init__(self, tokens_per_step: int, flops_per_token: float, window: int = 10) -> None:
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self._step_times: deque[float] = deque(maxlen=window + 1)
        self._peak: Optional[float] = None

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        peak = peak_flops(pl_module.device, str(trainer.precision))
        self._peak = None if peak is None else peak * trainer.world_size
        self._step_times.clear()
        self._step_times.append(time.perf_counter())

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._step_times.clear()  # validation time is not training throughput
        self._step_times.append(time.perf_counter())

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if not is_step_boundary(trainer, batch_idx):
            return
        self._step_times.append(time.perf_counter())
        steps = len(self._step_times) - 1
        if steps < 1:
            return
        tokens_per_s = steps * self.tokens_per_step / (self._step_times[-1] - self._step_times[0])
        metrics = {"perf/tokens_per_s": tokens_per_s, "perf/flops_per_s": tokens_per_s * self.flops_per_token}
        if self._peak is not None:
            metrics["perf/mfu"] = metrics["perf/flops_per_s"] / self._peak
        log_step_metrics(trainer, metrics, trainer.global_step - 1)  # the step just taken


class TokenProgressBar(TQDMProgressBar):
    """The training bar counts tokens of the stage budget (e.g. "1.2M/4.0M tok"), not batches."""

    def __init__(self, stage_name: str, budget_tokens: int, tokens_per_step: int, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.stage_name = stage_name
        self.budget_tokens = budget_tokens
        self.tokens_per_step = tokens_per_step

    def init_train_tqdm(self) -> Tqdm:
        # Made with its description, total and unit: Lightning's "Training" and "Epoch 0" bars
        # would print first and stay in the log.
        return Tqdm(desc=f"stage {self.stage_name}", total=self.budget_tokens, unit="tok", unit_scale=True,
                    position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
                    file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT)

    def init_validation_tqdm(self) -> Tqdm:
        # A validation pass is a batch or two per source: a bar per source only clutters the log,
        # and the losses land in the metrics and the training bar.
        return Tqdm(disable=True)

    def on_train_epoch_start(self, trainer: "pl.Trainer", *_: Any) -> None:
        self._show_tokens(trainer)  # a stage is one epoch: the bar made at train start carries on

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if is_step_boundary(trainer, batch_idx) and self._should_update(trainer.global_step, trainer.max_steps):
            self._show_tokens(trainer)
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the logger version says nothing about training
        return metrics

    def _show_tokens(self, trainer: "pl.Trainer") -> None:
        bar = self.train_progress_bar
        if not bar.disable:
            bar.n = trainer.global_step * self.tokens_per_step
            bar.refresh()


def stage_loggers(stage_dir: Path) -> list:
    """CSV (stage_dir/logs/csv/version_N/metrics.csv) and TensorBoard (stage_dir/logs/tensorboard/
    version_N). Each start of the stage (a resume included) gets its own version, so Lightning never
    overwrites the rows an interrupted attempt wrote; codemix.train.stages merges them."""
    logs = stage_dir / "logs"
    return [CSVLogger(logs, name="csv"), TensorBoardLogger(logs, name="tensorboard", default_hp_metric=False)]
