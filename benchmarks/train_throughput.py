"""Training tokens/s of codemix's Lightning path against a bare PyTorch loop, with torch.compile on and
off, and of FSDP2 against DDP on 2 ranks: each pair measured in the same run, same everything.

Both train the same model (same preset, same seed) on the same MixtureDataModule batches with the same
global batch, AdamW groups, LR schedule and gradient clipping. The Lightning side is the stage exactly
as `codemix train` builds it (CodemixLM, the Trainer with its callbacks, loggers and per-source
accounting); the bare side is the loop one would write by hand. Timing covers the optimizer steps
after a warm-up, not start-up or validation; the two alternate `--repeats` times and the best of each
is compared (the machine may be shared, so the best is the least disturbed).

Compile on/off: the same Lightning stage with `trainer.compile` true and false (each block compiled;
on CPU that buys little, on a GPU it fuses kernels). FSDP2 vs DDP: the stage launched by `codemix
train` on 2 ranks (gloo on CPU) with each strategy, tokens/s read from the stage's own metrics
(perf/tokens_per_s, the median of the steps after the warm-up).

    .venv/bin/python benchmarks/train_throughput.py [--corpus PATH] [--steps 40] [--repeats 3] [--skip compile,ranks]

On a GPU it also reports MFU (model FLOPs per token from codemix.model.flops times tokens/s, over the
device's 16-bit peak from codemix.train.callbacks). The study's 470m at sequence 8192 in bf16, with
the fastest attention available (flash-attn if installed, else SDPA's flash kernel), needs a corpus
packed at 8192 and the study's 256k vocabulary:

    codemix data build --quickstart --set seq_len=8192 --out .codemix/corpora/quickstart-8k
    .venv/bin/python benchmarks/train_throughput.py --corpus .codemix/corpora/quickstart-8k --preset 470m \
        --vocab-size 256000 --accelerator gpu --precision bf16-mixed --micro-batch 2 --accumulation 2 --steps 30

Writes benchmarks/results/train_throughput_cpu.json (or _cuda) with device, versions, config, command.
Targets: lightning / bare >= 0.95 on CPU; MFU >= 0.40 for the 470m on an H100."""

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml

from codemix.config.recipe import load_recipe
from bench_corpus import open_bench_corpus, recorded_path  # benchmarks/ is on sys.path when run as a script
from codemix.data.datamodule import MixtureDataModule
from codemix.model.flops import flops_per_token
from codemix.train.callbacks import peak_flops
from codemix.train.module import parameter_groups, per_sample_loss
from codemix.train.run import StageTraining
from codemix.train.schedules import lr_at
from codemix.plan.stage import plan_recipe
from codemix.train.stages import package_versions

RESULTS = Path(__file__).parent / "results"
WARMUP_STEPS = 5


def bench_recipe(folder: Path, corpus: Path, seq_len: int, steps: int, args: argparse.Namespace,
                 compile: bool = False) -> Path:
    global_batch = args.micro_batch * args.accumulation
    recipe = {
        "name": "bench",
        "model": {"preset": args.preset, "max_seq_len": seq_len}
                 | ({"vocab_size": args.vocab_size} if args.vocab_size else {}),
        "data": {"corpus": str(corpus)},
        "trainer": {"accelerator": args.accelerator, "devices": 1, "precision": args.precision, "compile": compile},
        "stages": {"bench": {
            "tokens": steps * global_batch * seq_len, "mixture": {"code": 0.5, "text": 0.5}, "seq_len": seq_len,
            "global_batch": global_batch, "micro_batch": args.micro_batch, "optimizer": {"lr": 1e-3},
            "schedule": {"kind": "cosine", "warmup": 0.1}, "init_from": {"ref": "scratch"}, "max_passes": 100.0,
        }},
    }
    path = folder / f"bench{'-compiled' if compile else ''}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


class StepClock(pl.Callback):
    """Time stamps at optimizer-step boundaries."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            self.stamps.append(time.perf_counter())


def tokens_per_s(stamps: list[float], step_tokens: int) -> float:
    timed = stamps[WARMUP_STEPS:]
    return (len(timed) - 1) * step_tokens / (timed[-1] - timed[0])


def run_lightning(training: StageTraining) -> float:
    pl.seed_everything(0, verbose=False)
    module = training.build_module(fresh=True)
    trainer = training.build_trainer(resume=None)
    clock = StepClock()
    trainer.callbacks.append(clock)
    trainer.fit(module, datamodule=new_datamodule(training))
    return tokens_per_s(clock.stamps, training.plan.batch_tokens)


def new_datamodule(training: StageTraining) -> MixtureDataModule:
    stage = training.stage
    return MixtureDataModule(training.plan.data, stage.micro_batch, stage.seed)


def run_bare(training: StageTraining, device: torch.device, autocast_dtype) -> float:
    """The hand-written loop: same model, data, batch, optimizer, schedule, clipping."""
    pl.seed_everything(0, verbose=False)
    stage = training.stage
    model = training.build_module(fresh=True).model.to(device).train()
    optimizer = torch.optim.AdamW(parameter_groups(model, stage.optimizer.weight_decay), lr=stage.optimizer.lr,
                                  betas=tuple(stage.optimizer.betas), eps=stage.optimizer.eps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, training.plan.steps, stage.schedule, stage.optimizer.lr) / stage.optimizer.lr)
    stamps = []
    for index, batch in enumerate(new_datamodule(training).train_dataloader()):
        ids = batch["input_ids"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = per_sample_loss(model, ids).mean() / training.plan.accumulation
        loss.backward()
        if (index + 1) % training.plan.accumulation:
            continue
        if stage.optimizer.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), stage.optimizer.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    return tokens_per_s(stamps, training.plan.batch_tokens)


def run_ranks(recipe: Path, strategy: str, home: Path, devices: int = 2) -> float:
    """The stage trained by `codemix train` on `devices` ranks with `strategy`: its logged tokens/s."""
    command = [sys.executable, "-m", "codemix.cli", "train", "--home", str(home), str(recipe),
               f"trainer.devices={devices}", f"trainer.strategy={strategy}", "stages.bench.num_workers=0"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode:
        raise SystemExit(f"benchmark: {shlex.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    (metrics,) = (home / "runs" / "bench").glob("bench-*/metrics.csv")
    with open(metrics, newline="") as rows:
        rates = [float(row["perf/tokens_per_s"]) for row in csv.DictReader(rows)
                 if row.get("perf/tokens_per_s") and int(row["step"]) >= WARMUP_STEPS]
    return statistics.median(rates)


def ratio_row(name: str, measured: dict[str, list[float]], over: str, under: str) -> dict:
    best = {side: max(values) for side, values in measured.items()}
    return {"name": name, "tokens_per_s": measured, "best_tokens_per_s": best, f"ratio_{over}_over_{under}":
            best[over] / best[under]}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="quickstart", help="corpus name or path (default: quickstart, built first when missing)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--accumulation", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--vocab-size", type=int, help="model vocabulary (default: the corpus's), e.g. 256000")
    parser.add_argument("--skip", default="", help="comma-separated rows to leave out: compile, ranks")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if skip - {"compile", "ranks"}:
        parser.error(f"--skip {args.skip}: rows are compile, ranks")
    if args.steps < WARMUP_STEPS + 2:  # the timing needs two steps after the warm-up
        parser.error(f"--steps {args.steps}: at least {WARMUP_STEPS + 2}")

    corpus = open_bench_corpus(args.corpus)
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    autocast_dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(bench_recipe(Path(tmp), corpus.path, corpus.seq_len, args.steps, args))
        plan = plan_recipe(recipe, lambda _: corpus, home=tmp).stage("bench")
        training = StageTraining(plan, None, "benchmark")
        lightning, bare = [], []
        for _ in range(args.repeats):  # alternate so a busy spell on the machine hits both sides
            bare.append(run_bare(training, device, autocast_dtype))
            lightning.append(run_lightning(training))
        rows = []
        if "compile" not in skip:
            compiled_path = bench_recipe(Path(tmp), corpus.path, corpus.seq_len, args.steps, args, compile=True)
            compiled = StageTraining(plan_recipe(load_recipe(compiled_path), lambda _: corpus, home=tmp).stage("bench"),
                                     None, "benchmark")
            measured = {"compiled": [], "eager": []}
            for _ in range(args.repeats):
                measured["compiled"].append(run_lightning(compiled))
                measured["eager"].append(run_lightning(training))
            rows.append(ratio_row("compile", measured, "compiled", "eager"))
        if "ranks" not in skip and device.type == "cpu":  # on GPUs: one device here; see gpu_check.py
            measured = {"fsdp2": [], "ddp": []}
            for repeat in range(args.repeats):
                for strategy in measured:
                    measured[strategy].append(run_ranks(recipe.source_path, strategy, Path(tmp) / f"{strategy}-{repeat}"))
            rows.append({**ratio_row("fsdp2_vs_ddp_2_ranks", measured, "fsdp2", "ddp"),
                         "note": "2 gloo processes on the CPU cores; job tokens/s (both ranks)"})
    per_token = flops_per_token(training.plan.model, corpus.seq_len)
    peak = peak_flops(device, args.precision)
    result = {
        "benchmark": "train_throughput",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
        "config": {**vars(args), "corpus": recorded_path(corpus.path), "seq_len": corpus.seq_len,
                   "model": training.plan.model.to_dict(), "timed_steps": args.steps - WARMUP_STEPS - 1},
        "tokens_per_s": {"lightning": lightning, "bare": bare},
        "best_tokens_per_s": {"lightning": max(lightning), "bare": max(bare)},
        "ratio_lightning_over_bare": max(lightning) / max(bare),
        "target_ratio": 0.95,
        "flops_per_token": per_token,
        # None where the peak table has no figure (CPU, fp32, unlisted GPUs)
        "mfu": {"lightning": max(lightning) * per_token / peak, "bare": max(bare) * per_token / peak} if peak else None,
        "peak_flops": peak,
        "rows": rows,
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_end": os.getloadavg()[0],
        "command": shlex.join([".venv/bin/python", *sys.argv]),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"train_throughput_{device.type}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    mfu = f", MFU {result['mfu']['lightning']:.1%} (bare {result['mfu']['bare']:.1%})" if peak else ""
    print(f"lightning {max(lightning):,.0f} tok/s, bare loop {max(bare):,.0f} tok/s, "
          f"ratio {result['ratio_lightning_over_bare']:.3f} (target >= 0.95){mfu} -> {out}")
    for row in rows:
        ratio = next(key for key in row if key.startswith("ratio_"))
        print(f"{row['name']}: " + ", ".join(f"{side} {best:,.0f} tok/s" for side, best in row["best_tokens_per_s"].items())
              + f", {ratio} {row[ratio]:.3f}")
    return result


if __name__ == "__main__":
    main()
