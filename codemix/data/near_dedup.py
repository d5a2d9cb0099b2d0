"""Near-duplicate removal with MinHash, for the sources whose spec sets `near_dedup: minhash`, as The
Stack was de-duplicated: datatrove's MinHash blocks find the pairs, codemix picks who keeps a text.
Three parts of the build's passes (codemix.data.tasks), all under <work>/minhash:

    scan           datatrove's MinhashDedupSignature after the scan step: a signature per document of
                   the slice, per band in signatures/bucket_<band>/<scan rank>.minhash.sig
    near_pairs     datatrove's MinhashDedupBuckets, one task per band: the documents agreeing in it
    near_clusters  (one task) the pairs' connected components; every member but the earliest (scan
                   rank, which orders sources as in the data YAML and then slices, then position)
                   is listed in drop.npy, sorted by (scan rank, position)

Memory: a band task streams its sorted signature files; the cluster task holds only the documents
that have a near-duplicate; a pack task reads only its slice's run of drop.npy, by binary search in
the memory-mapped file."""

import re
from pathlib import Path

import numpy as np
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.word_tokenizers import WordTokenizer

from codemix.atomic import atomic_file
from codemix.config.data_spec import MinhashSpec
from codemix.data.sorted_runs import run_of

DROP = np.dtype([("rank", "<u4"), ("position", "<u4")])
_WORD = re.compile(r"\w+")


class Words(WordTokenizer):
    """Shingle words: runs of letters, digits and '_', so an identifier stays one word. (datatrove's
    default for English is NLTK's punkt, whose model is downloaded at run time.)"""

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def folder(work: str | Path) -> Path:
    return Path(work) / "minhash"


def _config(spec: MinhashSpec):
    from datatrove.pipeline.dedup.minhash import MinhashConfig

    return MinhashConfig(n_grams=spec.n_grams, num_buckets=spec.buckets, hashes_per_bucket=spec.hashes_per_bucket,
                         seed=spec.seed)


def signature_step(work: str, spec: MinhashSpec) -> PipelineStep:
    """Follows the scan step, which passes it every document of a near_dedup source's slice."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    return MinhashDedupSignature(output_folder=str(folder(work) / "signatures"), config=_config(spec), language=Words())


def pairs_step(work: str, spec: MinhashSpec) -> PipelineStep:
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets

    return MinhashDedupBuckets(input_folder=str(folder(work) / "signatures"), output_folder=str(folder(work) / "pairs"),
                               config=_config(spec))


class ClusterNearDuplicates(PipelineStep):
    """Join the pairs into components whose root is their earliest document; list all the others."""

    type = "codemix"
    name = "near_clusters"

    def __init__(self, work: str):
        super().__init__()
        self.work = work

    def run(self, data, rank: int = 0, world_size: int = 1):
        parent: dict[tuple[int, int], tuple[int, int]] = {}

        def root(node: tuple[int, int]) -> tuple[int, int]:
            while parent.setdefault(node, node) != node:
                parent[node] = parent[parent[node]]  # path halving
                node = parent[node]
            return node

        for path in sorted((folder(self.work) / "pairs").glob("*.dups")):
            for rank_a, doc_a, rank_b, doc_b in np.fromfile(path, dtype="<u4").reshape(-1, 4).tolist():
                a, b = root((rank_a, doc_a)), root((rank_b, doc_b))
                if a != b:
                    parent[max(a, b)] = min(a, b)  # the earliest document stays the root
        dropped = sorted(node for node in list(parent) if root(node) != node)
        with atomic_file(folder(self.work) / "drop.npy") as out:  # whole or absent: the pack tasks read it
            np.save(out, np.array(dropped, dtype=DROP))
        self.stat_update("near_duplicates", value=len(dropped))
        yield from ()


def dropped_positions(work: str, scan_rank: int) -> set[int]:
    """The positions of the slice scanned at `scan_rank` that near-duplicate an earlier document."""
    return set(run_of(np.load(folder(work) / "drop.npy", mmap_mode="r"), _rank, scan_rank)["position"].tolist())


def _rank(row: np.void) -> int:
    return int(row["rank"])
