"""Corpora of exactly known sizes for the mixture and DataModule tests, written with the real
MDSWriter to the corpus-on-disk contract, plus a script entry point that streams a stage in a
separate process (resume in a new process, two ranks).

Every sample's tokens say where it came from: [source_id, split (0 train, 1 val), index, ...], so a
test can check each sample's source_id label against its content and compare samples across runs.
"""

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

SEQ_LEN = 8
VOCAB = 512


@dataclass(frozen=True)
class SourceSpec:
    name: str
    kind: str
    train_samples: int
    val_samples: int = 4


def sample_tokens(source_id: int, split: int, index: int) -> np.ndarray:
    tail = (np.arange(SEQ_LEN - 3) * 7 + index) % VOCAB
    return np.concatenate([[source_id, split, index], tail]).astype(np.uint16)


def _write_tokenizer(path: Path) -> str:
    from tokenizers import Tokenizer, models

    tokenizer = Tokenizer(models.BPE())
    tokenizer.add_special_tokens(["<|endoftext|>", "<|bos|>", "<|pad|>"])
    tokenizer.save(str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _write_split(out: Path, source_id: int, split: int, count: int) -> None:
    from codemix._streaming import MDSWriter

    # A small shard size limit gives each source several shards, so sample -> shard -> stream
    # mapping is exercised across shard boundaries.
    with MDSWriter(out=str(out), columns={"tokens": "ndarray:uint16"}, compression=None, size_limit=1 << 9) as writer:
        for index in range(count):
            writer.write({"tokens": sample_tokens(source_id, split, index)})


def write_corpus(root: Path, sources: list[SourceSpec], name: str = "mixtest") -> Path:
    from codemix.atomic import write_json_atomic

    root.mkdir(parents=True, exist_ok=True)
    tokenizer_hash = _write_tokenizer(root / "tokenizer.json")
    for source_id, spec in enumerate(sources):
        source_dir = root / spec.name
        _write_split(source_dir / "train", source_id, 0, spec.train_samples)
        _write_split(source_dir / "val", source_id, 1, spec.val_samples)
        splits = {
            split: {"documents": count, "samples": count, "tokens": count * SEQ_LEN}
            for split, count in (("train", spec.train_samples), ("val", spec.val_samples))
        }
        write_json_atomic(
            source_dir / "manifest.json",
            {
                "name": spec.name,
                "kind": spec.kind,
                "licence": "test",
                "provenance": "tests/mixture_fixtures.py",
                "documents": spec.train_samples + spec.val_samples,
                "tokens": (spec.train_samples + spec.val_samples) * SEQ_LEN,
                "bytes": 0,
                "tokenizer_hash": tokenizer_hash,
                "filters": {},
                "skipped": {"binary": 0, "non_utf8": 0},
                "splits": splits,
                "build_command": "tests",
            },
        )
    write_json_atomic(
        root / "corpus.json",
        {
            "name": name,
            "tokenizer_hash": tokenizer_hash,
            "seq_len": SEQ_LEN,
            "vocab_size": VOCAB,
            "eos_id": 0,
            "bos_id": 1,
            "pad_id": 2,
            "token_dtype": "uint16",
            "sources": [{"name": s.name, "kind": s.kind, "licence": "test"} for s in sources],
            "build_command": "tests",
            "built_at": "2026-01-01T00:00:00Z",
        },
    )
    return root


class RecordingLM(L.LightningModule):
    """A one-layer next-token model that records the samples each training step receives."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 16)
        self.head = torch.nn.Linear(16, VOCAB)
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        ids = batch["input_ids"]
        self.seen += [[label, *head] for label, head in zip(batch["source_id"].tolist(), ids[:, :3].tolist())]
        logits = self.head(self.embed(ids[:, :-1]))
        return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def stage_datamodule(corpus, mixture, tokens, seq_len, global_batch, micro_batch, seed, max_passes=1.0,
                     num_workers=0, val_samples_per_source=64, origin="stage"):
    """A MixtureDataModule for a stage given as loose values (what a recipe's plan holds)."""
    from codemix.data.corpus import Corpus, resolve_corpus
    from codemix.data.datamodule import MixtureDataModule
    from codemix.data.mixture import plan_data

    opened = Corpus.open(resolve_corpus(corpus))
    plan = plan_data(opened, mixture, tokens, seq_len, global_batch, max_passes, origin=origin)
    return MixtureDataModule(plan, micro_batch, seed, num_workers=num_workers,
                             val_samples_per_source=val_samples_per_source, origin=origin)


def stream_stage(spec: dict) -> dict:
    """Stream a stage's train loader: optionally restore a saved position first, optionally stop after
    `take` batches and save the position. Returns the samples seen as [source_id label, *first 3 tokens]."""
    module = stage_datamodule(spec["corpus"], **spec["stage"])
    if spec.get("state_in"):
        module.load_state_dict(json.loads(Path(spec["state_in"]).read_text()))
    seen = []
    loader = module.train_dataloader()
    for index, batch in enumerate(loader, start=1):
        labels = batch["source_id"].tolist()
        heads = batch["input_ids"][:, :3].tolist()
        seen += [[label, *head] for label, head in zip(labels, heads)]
        if index == spec.get("take"):
            break  # stop right after the batch: the loader has counted exactly the batches taken
    return {
        "samples": seen,
        "state": module.state_dict(),
        "accumulate": module.accumulate_grad_batches,
        "batches": len(loader),
    }


def fit_stage(spec: dict, out: Path) -> None:
    """Train RecordingLM on the stage with a Lightning Trainer launched as `spec["trainer"]` says (its
    ddp launcher re-runs this script for the other ranks); each rank writes OUT.rank<N>."""
    module = stage_datamodule(spec["corpus"], **spec["stage"])
    model = RecordingLM()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False, **spec["trainer"],
    )
    trainer.fit(model, datamodule=module)
    result = {"samples": model.seen, "global_step": trainer.global_step}
    out.with_name(f"{out.name}.rank{trainer.global_rank}").write_text(json.dumps(result))


if __name__ == "__main__":
    # usage: python mixture_fixtures.py SPEC.json OUT.json  (run in its own process by the tests)
    spec = json.loads(Path(sys.argv[1]).read_text())
    if "trainer" in spec:
        fit_stage(spec, Path(sys.argv[2]))
    else:
        Path(sys.argv[2]).write_text(json.dumps(stream_stage(spec)))
