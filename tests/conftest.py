"""Every test session gets its own TMPDIR and CODEMIX_HOME, and leaves no /dev/shm segments behind
(mosaicml-streaming keeps its shared memory there)."""

pytest_plugins = ["corpus_fixtures", "reproduce_fixtures"]

import os
import shutil
import tempfile
from pathlib import Path

import pytest

SHM = Path("/dev/shm")


def _shm_entries() -> set[str]:
    return set(os.listdir(SHM)) if SHM.is_dir() else set()


def _mapped_shm() -> set[str]:
    """Names under /dev/shm that a live process has mapped, i.e. in use by someone."""
    names = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            lines = maps.read_text().splitlines()
        except OSError:  # the process has ended, or is not ours to read
            continue
        names.update(line.split(f"{SHM}/", 1)[1].removesuffix(" (deleted)") for line in lines if f" {SHM}/" in line)
    return names


@pytest.fixture(scope="session", autouse=True)
def isolated_session(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("session")
    tmp = root / "tmp"
    tmp.mkdir()
    saved = {k: os.environ.get(k) for k in ("TMPDIR", "CODEMIX_HOME")}
    os.environ["TMPDIR"] = str(tmp)
    os.environ["CODEMIX_HOME"] = str(root / "home")
    tempfile.tempdir = None  # re-read TMPDIR
    before = _shm_entries()
    yield root
    # Only what this session left: new segments that no live process maps. streaming's own
    # clean_stale_shared_memory() would also unlink the segments of a training running beside the
    # tests (its dataloader workers then fail to attach).
    for name in _shm_entries() - before - _mapped_shm():
        path = SHM / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    tempfile.tempdir = None


def pytest_configure(config: pytest.Config) -> None:
    import torch

    # Tiny models are overhead-bound: one intra-op thread is faster on a 2-core machine and
    # keeps results independent of the core count.
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
