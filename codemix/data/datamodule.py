"""The batches of one training stage: a LightningDataModule over one StreamingDataset whose streams are
the corpus sources the stage's mixture draws from.

One epoch of the dataset is the whole stage: each stream is told exactly how many samples to draw
(`choose`), so the stage stops at its token budget and every source contributes its planned share.
Each sample carries the source_id of the stream it came from. The loader's position is resumable
across processes (mosaicml-streaming's elastically deterministic order), and its state says which
stage plan it belongs to, so a checkpoint of another stage cannot be resumed into this one by mistake.
"""

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from codemix._streaming import Stream, StreamingDataLoader, StreamingDataset
from codemix.data.corpus import TOKENS_COLUMN
from codemix.data.mixture import DataPlan
from codemix.data.remote import StreamCache
from codemix.data.validation import tagged_sample, validation_samples
from codemix.errors import ConfigError

# One canonical node: the global sample order then does not depend on how many nodes or ranks
# read it, so a stage resumed on another world size continues the same sequence.
CANONICAL_NODES = 1
# streaming's own default block for one canonical node, fixed here so the epoch order does not hang
# on a default streaming sets lazily (and may change); saved positions depend on that order.
SHUFFLE_BLOCK_SIZE = 4_000_000


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
        return tagged_sample(sample[TOKENS_COLUMN], int(self.source_ids_of(np.array([sample_id]))[0]))


class StageLoader(StreamingDataLoader):
    """The stage's train loader: saves/restores its position together with the identity (plan and
    seed) of the stage it belongs to. (Tokens per source are counted by the LightningModule.)"""

    def __init__(self, dataset: SourceTaggedDataset, *, plan: DataPlan, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.plan = plan
        self._loaded_position: dict[str, Any] | None = None

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
        self._loaded_position = position


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

    def __init__(self, plan: DataPlan, micro_batch: int, seed: int, num_workers: int = 0,
                 val_samples_per_source: int = 64, cache: StreamCache = StreamCache(), origin: str = "stage") -> None:
        """`plan` and `cache` are the stage's (codemix.plan): its global batch splits into micro batches
        over the ranks, which is checked once the Trainer's world size is known."""
        super().__init__()
        self.plan = plan
        self.corpus = plan.corpus
        self.cache = cache
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
        if self.plan.global_batch % per_step:  # a launch with another world size than the recipe's
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
                **asdict(self.cache),
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
        for source in self.corpus.sources:
            samples = validation_samples(self.corpus, source.name, self.val_samples_per_source)
            if samples is None:
                continue
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
