"""The paper path on one GPU, in one command: `python benchmarks/gpu_check.py` (about 5 minutes on an
H100/H200; JSON into benchmarks/results/gpu_check.json).

1. attention: which scaled-dot-product kernels run causal bf16 attention at seq 8,192 (flash, cuDNN,
   memory-efficient, math) and how long each takes; codemix's own attention must not fall back to math.
2. model: the 470m preset (256k vocabulary, seq 8,192) at micro-batch 1, 2 and 4 with the chunked
   loss and bf16 autocast: measured peak memory (torch.cuda.max_memory_allocated) next to
   codemix.model.memory's estimate, tokens/s and MFU over a few optimizer steps (fused AdamW).
3. fsdp2: CodemixLM under codemix's FSDP2 strategy (ModelParallelStrategy, bf16 parameters) on one GPU, its
   sharded torch.distributed.checkpoint save (size, seconds) and a resume from it.
4. export: the Hugging Face export's logits on CUDA against the codemix model's.

Needs torch, lightning, safetensors, tokenizers and transformers (the device image has them) plus
omegaconf and antlr4-python3-runtime carried as wheels. `--dry-run` runs every check at toy shapes on
the CPU (the suite runs it), so the script is known to work before a GPU is lent."""

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codemix.config.model import ModelConfig  # noqa: E402
from codemix.config.presets import preset  # noqa: E402
from codemix.model.flops import flops_per_token  # noqa: E402
from codemix.model.memory import GIB, TrainingShape, estimate_memory  # noqa: E402
from codemix.model.transformer import Decoder  # noqa: E402
from codemix.train.callbacks import peak_flops  # noqa: E402
from codemix.train.module import per_sample_loss  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gpu_check.json"
PAPER = {"preset": "470m", "vocab": 256_000, "seq": 8192, "micro_batches": (1, 2, 4), "steps": 4}
DRY = {"preset": "tiny", "vocab": 512, "seq": 128, "micro_batches": (1, 2), "steps": 2}


def check_attention(device: torch.device, seq: int) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from codemix.model.attention import attention

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (torch.randn(1, 16, seq, 64, device=device, dtype=dtype) for _ in range(3))
    kernels = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.MATH):
        try:
            with sdpa_kernel([backend]):
                kernels[backend.name.lower()] = {"ms": _time_ms(lambda: F.scaled_dot_product_attention(
                    q, k, v, is_causal=True), device)}
        except RuntimeError as err:
            kernels[backend.name.lower()] = {"error": str(err).splitlines()[0][:200]}
    fast = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    try:  # codemix's attention with the math kernel forbidden: it must still run on a GPU
        with sdpa_kernel(fast if device.type == "cuda" else fast + [SDPBackend.MATH]):
            codemix_ms = _time_ms(lambda: attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)), device)
        codemix = {"ms": codemix_ms, "math_forbidden": device.type == "cuda"}
    except RuntimeError as err:
        codemix = {"error": str(err).splitlines()[0][:200]}
    return {"seq": seq, "dtype": str(dtype), "kernels": kernels, "codemix_attention": codemix}


def check_model(device: torch.device, shape: dict) -> list[dict]:
    rows = []
    for micro_batch in shape["micro_batches"]:
        cfg = preset(shape["preset"], vocab_size=shape["vocab"], max_seq_len=max(shape["seq"], 128))
        estimate = estimate_memory(cfg, TrainingShape(seq_len=shape["seq"], micro_batch=micro_batch,
                                                      precision="bf16-mixed", strategy="ddp", world_size=1))
        row = {"preset": shape["preset"], "vocab": shape["vocab"], "seq": shape["seq"], "micro_batch": micro_batch,
               "estimate_gib": round(estimate.total / GIB, 2)}
        try:
            row.update(_train_steps(cfg, device, micro_batch, shape["seq"], shape["steps"]))
        except torch.OutOfMemoryError as err:
            row["error"] = f"out of memory: {str(err).splitlines()[0][:160]}"
        rows.append(row)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _train_steps(cfg: ModelConfig, device: torch.device, micro_batch: int, seq: int, steps: int) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = Decoder(cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    batch = torch.randint(0, cfg.vocab_size, (micro_batch, seq + 1), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> float:
        with autocast:
            loss = per_sample_loss(model, batch).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    step()  # warm-up: allocator, kernels
    _sync(device)
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    tokens_per_s = micro_batch * seq / seconds
    peak = peak_flops(device, "bf16-mixed")
    measured = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024)
    return {"peak_gib": round(measured / GIB, 2),
            "peak_source": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "ru_maxrss growth",
            "tokens_per_s": round(tokens_per_s, 1), "step_s": round(seconds, 4),
            "mfu": None if peak is None else round(tokens_per_s * flops_per_token(cfg, seq) / peak, 4),
            "loss_finite": all(torch.isfinite(torch.tensor(losses)).tolist())}


def check_fsdp2(device: torch.device, shape: dict) -> dict:
    """CodemixLM sharded by codemix's FSDP2 strategy (Lightning's ModelParallelStrategy) on one device for
    a few steps; then its sharded torch.distributed.checkpoint save, and a resume from it for one step."""
    import lightning.pytorch as pl

    from codemix.config.recipe_schema import OptimizerSection, ScheduleSection
    from codemix.train.module import CodemixLM
    from codemix.train.sharded_checkpoint import ShardedStrategy, sharded_problem

    cfg = preset("tiny" if device.type == "cpu" else "470m", vocab_size=shape["vocab"],
                 max_seq_len=max(shape["seq"], 128))
    seq, steps = min(shape["seq"], 2048), shape["steps"]
    samples = [{"input_ids": torch.randint(0, cfg.vocab_size, (seq + 1,)), "source_id": torch.tensor(0)}
               for _ in range(steps)]
    batches = torch.utils.data.DataLoader(samples, batch_size=1)

    def fit(max_steps: int, ckpt_path: Path | None = None) -> pl.Trainer:
        module = CodemixLM(cfg, OptimizerSection(lr=1e-4), ScheduleSection(kind="constant", warmup=0), steps + 1,
                           ["all"], seq, sharded=True, bf16_parameters=device.type == "cuda")
        trainer = pl.Trainer(accelerator=device.type, devices=1, max_steps=max_steps, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, limit_val_batches=0,
                             precision="bf16-mixed" if device.type == "cuda" else "32-true",
                             strategy=ShardedStrategy(world_size=1))
        trainer.fit(module, train_dataloaders=batches, ckpt_path=ckpt_path)
        return trainer

    start = time.perf_counter()
    trainer = fit(steps)
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        sharded = Path(tmp) / "last.ckpt"
        start = time.perf_counter()
        trainer.save_checkpoint(sharded)
        save_seconds = time.perf_counter() - start
        size = sum(path.stat().st_size for path in sharded.iterdir())
        resumed = fit(steps + 1, sharded)
        return {"preset": cfg_name(cfg), "seq": seq, "steps": trainer.global_step, "seconds": round(seconds, 2),
                "sharded_checkpoint": {"problem": sharded_problem(sharded), "bytes": size,
                                       "save_seconds": round(save_seconds, 2), "resumed_to_step": resumed.global_step}}


def cfg_name(cfg: ModelConfig) -> str:
    return f"d{cfg.d_model}xL{cfg.n_layers}"


def check_export(device: torch.device) -> dict:
    """A tiny model exported to Hugging Face and loaded by transformers: its logits against ours."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM

    from codemix.export.hf import export_hf
    from codemix.model.checkpoint import save_pretrained

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
        tokenizer.train_from_iterator(["def f(x):\n    return x + 1\n"] * 50,
                                      trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<eos>"]))
        tokenizer.save(f"{tmp}/tokenizer.json")
        cfg = preset("tiny", vocab_size=tokenizer.get_vocab_size())
        model = Decoder(cfg).eval()
        save_pretrained(model, cfg, f"{tmp}/tokenizer.json", f"{tmp}/ours")
        export_hf(f"{tmp}/ours", f"{tmp}/hf")
        theirs = AutoModelForCausalLM.from_pretrained(f"{tmp}/hf", torch_dtype=torch.float32).to(device).eval()
        ids = torch.randint(0, cfg.vocab_size, (2, 64), device=device)
        with torch.no_grad():
            difference = (model.to(device)(ids).float() - theirs(ids).logits.float()).abs().max().item()
    return {"max_abs_logit_difference": difference, "device": device.type}


def _time_ms(fn, device: torch.device, repeats: int = 5) -> float:
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return round((time.perf_counter() - start) / repeats * 1000, 3)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="toy shapes on the CPU (checks the script itself)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --dry-run to check the script on the CPU)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    shape = DRY if args.dry_run else PAPER
    result = {"command": " ".join(["python", "benchmarks/gpu_check.py", *sys.argv[1:]]),
              "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
              "versions": {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()},
              "dry_run": args.dry_run}
    for name, check in (("attention", lambda: check_attention(device, shape["seq"])),
                        ("model", lambda: check_model(device, shape)),
                        ("fsdp2", lambda: check_fsdp2(device, shape)),
                        ("export", lambda: check_export(device))):
        started = time.perf_counter()
        try:
            result[name] = check()
        except Exception as err:  # one failing check must not lose the others' figures
            result[name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"}
        print(f"gpu_check: {name} ({time.perf_counter() - started:.0f} s): {json.dumps(result[name])}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"gpu_check: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
