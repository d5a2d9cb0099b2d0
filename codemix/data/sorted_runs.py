"""Runs of rows in sorted numpy files, found by binary search: of a memory-mapped file only the run
and the few rows probed are read, so a build task's reads are its own share (codemix.data.tasks and
codemix.data.near_dedup: hash buckets, drop lists)."""

import bisect
from collections.abc import Callable

import numpy as np


def run_of(rows: np.ndarray, key: Callable[[np.void], object], value: object) -> np.ndarray:
    """The rows whose key is `value`, of `rows` sorted by key, as an array in memory."""
    start = bisect.bisect_left(rows, value, key=key)
    return np.array(rows[start:bisect.bisect_right(rows, value, lo=start, key=key)])


def bucket_run(sorted_hashes: np.ndarray, bucket: int, buckets: int) -> np.ndarray:
    """The rows of `sorted_hashes` (sorted by "hi") in the bucket-th of `buckets` equal ranges of the
    64-bit hash, as an array in memory."""
    hi = sorted_hashes["hi"]
    edges = [np.uint64(-(-k * 2**64 // buckets)) for k in (bucket, bucket + 1) if k < buckets]  # ceil
    first = int(np.searchsorted(hi, edges[0])) if bucket else 0
    end = int(np.searchsorted(hi, edges[1])) if bucket + 1 < buckets else len(hi)
    return np.array(sorted_hashes[first:end])
