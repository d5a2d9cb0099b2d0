"""The batches of one training stage: a LightningDataModule over one StreamingDataset whose streams are
the corpus sources the stage's mixture draws from.

One epoch of the dataset is the whole stage: each stream is told exactly how many samples to draw
(`choose`), so the stage stops at its token budget and every source contributes its planned share.
Each sample carries the source_id of the stream it came from. The loader's position is resumable
across processes (mosaicml-streaming's elastically deterministic order), and its state says which
stage plan it belongs to, so a checkpoint of another stage cannot be resumed into this one by mistake.
"""

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from codemix._streaming import Stream, StreamingDataLoader, StreamingDataset, streaming
from codemix.data.corpus import TOKENS_COLUMN, Corpus, resolve_corpus
from codemix.data.mixture import ShareRow, StagePlan, plan_stage, render_share_table, share_table
from codemix.errors import ConfigError

# One canonical node: the global sample order then does not depend on how many nodes or ranks
# read it, so a stage resumed on another world size continues the same sequence.
CANONICAL_NODES = 1
# streaming's own default block for one canonical node, fixed here because the consumed-prefix
# count below regenerates the epoch order outside __iter__, where streaming would set it lazily.
SHUFFLE_BLOCK_SIZE = 4_000_000


def _as_sample(tokens: np.ndarray, source_id: int) -> dict[str, Any]:
    return {"input_ids": torch.from_numpy(tokens.astype(np.int64)), "source_id": source_id}


class SourceTaggedDataset(StreamingDataset):
    """A StreamingDataset whose samples say which stream (corpus source) they were drawn from."""

    def __init__(self, *, streams: Sequence[Stream], source_ids: Sequence[int], **kwargs: Any) -> None:
        super().__init__(streams=streams, **kwargs)
        self.source_id_per_stream = np.asarray(source_ids, dtype=np.int64)

    def source_ids_of(self, sample_ids: np.ndarray) -> np.ndarray:
        # Streams occupy contiguous ranges of the global sample space, in stream order.
        stream_ids = np.searchsorted(self.sample_offset_per_stream, sample_ids, side="right") - 1
        return self.source_id_per_stream[stream_ids]

    def get_item(self, sample_id: int, retry: int = 7) -> dict[str, Any]:
        sample = super().get_item(sample_id, retry)
        return _as_sample(sample[TOKENS_COLUMN], int(self.source_ids_of(np.array([sample_id]))[0]))

    def epoch_order(self, epoch: int) -> np.ndarray:
        """This rank's sample ids for `epoch`, in the order its loader yields them (any num_workers:
        the loader takes worker batches round-robin, which is this rank's order cut into batches)."""
        world = self._parallel_rank_world  # detected in the main process: one worker per rank
        ids = streaming.base.batching.generate_work(self.batching_method, self, world, epoch, 0)
        mine = ids[world.node, world.rank_of_node].reshape(-1)
        return mine[mine >= 0]


class StageLoader(StreamingDataLoader):
    """The stage's train loader: counts tokens per source as batches are yielded, and saves/restores
    its position together with the identity (plan and seed) of the stage it belongs to."""

    def __init__(self, dataset: SourceTaggedDataset, *, plan: StagePlan, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.plan = plan
        num_sources = len(plan.sources)
        self._tokens_before = np.zeros(num_sources, np.int64)  # consumed before a resume
        self._tokens_since = np.zeros(num_sources, np.int64)  # consumed in this iteration
        self._loaded_position: dict[str, Any] | None = None

    @property
    def observed_tokens(self) -> list[int]:
        return (self._tokens_before + self._tokens_since).tolist()

    def __iter__(self):
        self._tokens_since[:] = 0
        for batch in super().__iter__():
            counts = torch.bincount(batch["source_id"], minlength=len(self.plan.sources)).numpy()
            self._tokens_since += counts * self.plan.seq_len
            yield batch

    @property
    def identity(self) -> str:
        """The plan and the shuffle seed: together they fix the stage's sample sequence."""
        return f"{self.plan.fingerprint()}/seed={self.dataset.shuffle_seed}"

    def state_dict(self) -> dict[str, Any]:
        # The dataset's world (detected when it was built), not StreamingDataLoader's fresh World.detect(),
        # which reads the environment again; position = samples taken by all ranks.
        samples = self.num_samples_yielded * self.dataset._parallel_rank_world.num_ranks
        return {"stage": self.identity, "streaming": self.dataset.state_dict(samples, False)}

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        if obj.get("stage") != self.identity:
            raise ConfigError(
                f"the saved data position belongs to stage {obj.get('stage')}, not to this stage "
                f"{self.identity} (corpus {self.plan.corpus.path}); resume a checkpoint of this stage, "
                "or start the stage from the weights only"
            )
        position = obj["streaming"]
        if position == self._loaded_position:
            return  # Lightning restores both the DataModule's and the loader's copy of one state
        super().load_state_dict(position)
        self._tokens_before = self._consumed_tokens(position)
        self._loaded_position = position

    def _consumed_tokens(self, position: Mapping[str, Any]) -> np.ndarray:
        """Tokens per source this rank consumed before `position`: regenerated from the deterministic
        order, so every rank (not just the one whose state was saved) resumes with its own counts."""
        dataset: SourceTaggedDataset = self.dataset  # type: ignore[assignment]
        consumed = int(position["sample_in_epoch"]) // dataset._parallel_rank_world.num_ranks
        if consumed == 0:  # also a position saved before the first batch, whose epoch reads -1
            return np.zeros(len(self.plan.sources), np.int64)
        order = dataset.epoch_order(int(position["epoch"]))[:consumed]
        counts = np.bincount(dataset.source_ids_of(order), minlength=len(self.plan.sources))
        return counts.astype(np.int64) * self.plan.seq_len


class ValSamples(Dataset):
    """A fixed, evenly spaced selection of one source's validation samples (no shuffle, no shm)."""

    def __init__(self, split_dir: Path, source_id: int, count: int) -> None:
        self.samples = streaming.LocalDataset(local=str(split_dir))
        available = self.samples.size
        count = min(count, available)
        self.indices = [i * available // count for i in range(count)]
        self.source_id = source_id

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return _as_sample(self.samples[self.indices[index]][TOKENS_COLUMN], self.source_id)


WORLD_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@contextmanager
def _streaming_world(trainer: "L.Trainer | None") -> Iterator[None]:
    """streaming 0.13 reads the ranks only from RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE. torchrun
    sets them all; Lightning's own launchers (ddp, ddp_spawn) and SLURM do not, and every process would
    read as rank 0 and stream the same samples. So while the dataset detects its world, the variables
    say what the trainer knows, and are put back afterwards: a LOCAL_RANK left behind would make a
    later Trainer in this process believe its ranks were launched externally."""
    if trainer is None:
        yield
        return
    saved = {key: os.environ.get(key) for key in WORLD_ENV}
    os.environ.update(
        RANK=str(trainer.global_rank),
        WORLD_SIZE=str(trainer.world_size),
        LOCAL_RANK=str(trainer.local_rank),
        LOCAL_WORLD_SIZE=str(trainer.world_size // trainer.num_nodes),
    )
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _world_size_from_env() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


class MixtureDataModule(L.LightningDataModule):
    """Train batches {"input_ids": LongTensor[micro_batch, seq_len], "source_id": LongTensor[micro_batch]}
    drawn by the stage's mixture, and one validation loader per source that has validation samples
    (`val_source_ids[dataloader_idx]` is its source_id).

    The stage is one epoch of the train loader: train it with `max_epochs=1` and
    `accumulate_grad_batches=module.accumulate_grad_batches`. The loader's length is known, so
    Lightning fetches no batch ahead and a mid-stage checkpoint holds exactly the consumed position
    (saved both as this module's state and as the loader's own state)."""

    def __init__(
        self,
        corpus: str | Path,
        mixture: Mapping[str, float],
        tokens: int,
        seq_len: int,
        global_batch: int,
        micro_batch: int,
        seed: int,
        max_passes: float = 1.0,
        num_workers: int = 0,
        tokenizer_hash: str | None = None,
        origin: str = "stage",
        val_samples_per_source: int = 64,
    ) -> None:
        super().__init__()
        if micro_batch <= 0 or global_batch % micro_batch:
            raise ConfigError(f"{origin}: global_batch {global_batch} is not a multiple of micro_batch {micro_batch}")
        if seed < 0:
            raise ConfigError(f"{origin}: seed must be >= 0, got {seed}")
        self.corpus = Corpus.open(resolve_corpus(corpus))
        self.plan = plan_stage(self.corpus, mixture, tokens, seq_len, global_batch, max_passes, tokenizer_hash, origin)
        self.micro_batch = micro_batch
        self.seed = seed
        self.num_workers = num_workers
        self.origin = origin
        self.val_samples_per_source = val_samples_per_source
        self.source_names = [s.name for s in self.corpus.sources]
        self.source_kinds = [s.kind for s in self.corpus.sources]
        self.val_source_ids: list[int] = []  # source_id of each val loader, by dataloader_idx
        self._train_loader: StageLoader | None = None
        self._pending_state: dict[str, Any] | None = None

    @property
    def world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.world_size if trainer is not None else _world_size_from_env()

    @property
    def accumulate_grad_batches(self) -> int:
        per_step = self.micro_batch * self.world_size
        if self.plan.global_batch % per_step:
            raise ConfigError(
                f"{self.origin}: global_batch {self.plan.global_batch} is not a multiple of micro_batch "
                f"{self.micro_batch} x world size {self.world_size}"
            )
        return self.plan.global_batch // per_step

    def _train_dataset(self) -> SourceTaggedDataset:
        drawn = self.plan.drawn
        with _streaming_world(getattr(self, "trainer", None)):
            streams = [
                Stream(local=str(self.corpus.split_dir(p.source.name, "train")),
                       remote=self.corpus.split_remote(p.source.name, "train"), choose=p.samples) for p in drawn
            ]
            dataset = SourceTaggedDataset(
                streams=streams,
                source_ids=[p.source.id for p in drawn],
                batch_size=self.micro_batch,
                shuffle=True,
                shuffle_seed=self.seed,
                shuffle_block_size=SHUFFLE_BLOCK_SIZE,
                num_canonical_nodes=CANONICAL_NODES,
            )
        for plan, found in zip(drawn, dataset.samples_per_stream):
            if plan.train_samples != found:
                raise ConfigError(
                    f"{self.corpus.split_dir(plan.source.name, 'train')}: holds {found} samples but its manifest "
                    f"says {plan.train_samples}; rebuild the corpus"
                )
        return dataset

    def train_dataloader(self) -> StageLoader:
        self.accumulate_grad_batches  # refuse a world size that does not divide the global batch
        loader = StageLoader(
            self._train_dataset(), plan=self.plan, batch_size=self.micro_batch, num_workers=self.num_workers
        )
        if self._pending_state is not None:
            loader.load_state_dict(self._pending_state)
            self._pending_state = None
        self._train_loader = loader
        return loader

    def val_dataloader(self) -> list[DataLoader]:
        loaders, self.val_source_ids = [], []
        if self.val_samples_per_source <= 0:
            return loaders
        for source in self.corpus.sources:
            if not int(self.corpus.manifest(source.name).get("splits", {}).get("val", {}).get("samples", 0)):
                continue
            samples = ValSamples(self.corpus.split_dir(source.name, "val"), source.id, self.val_samples_per_source)
            loaders.append(DataLoader(samples, batch_size=self.micro_batch, shuffle=False))
            self.val_source_ids.append(source.id)
        return loaders

    def state_dict(self) -> dict[str, Any]:
        if self._train_loader is not None:
            return self._train_loader.state_dict()
        return dict(self._pending_state or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:  # saved before the train loader existed: nothing consumed yet
            return
        if self._train_loader is not None:
            self._train_loader.load_state_dict(state_dict)
        else:
            self._pending_state = dict(state_dict)

    def observed_tokens(self) -> list[int]:
        """Tokens per source (index = source_id) this rank's train loader has yielded in the stage."""
        if self._train_loader is None:
            return [0] * len(self.plan.sources)
        return self._train_loader.observed_tokens

    def share_table(self) -> list[ShareRow]:
        return share_table(self.plan, self.observed_tokens())

    def share_table_text(self) -> str:
        return render_share_table(self.share_table())
