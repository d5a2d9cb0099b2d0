"""Every test session gets its own TMPDIR and CODEMIX_HOME, and leaves no /dev/shm segments behind
(mosaicml-streaming keeps its shared memory there, under a namespace per job: codemix._streaming)."""

pytest_plugins = ["corpus_fixtures", "reproduce_fixtures"]

import os
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_session(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("session")
    tmp = root / "tmp"
    tmp.mkdir()
    saved = {k: os.environ.get(k) for k in ("TMPDIR", "CODEMIX_HOME")}
    os.environ["TMPDIR"] = str(tmp)
    os.environ["CODEMIX_HOME"] = str(root / "home")
    tempfile.tempdir = None  # re-read TMPDIR
    yield root
    from codemix._streaming import sweep_stale_shared_memory

    # What the runs this session killed left behind; a training running beside the tests keeps its
    # own (streaming's clean_stale_shared_memory() would unlink every job's).
    sweep_stale_shared_memory()
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


# The longest files (idle 2-core durations, 50-200 s each), started first so that `make test`'s two
# workers (`--dist loadfile --no-loadscope-reorder`) finish together; the first builds the smoke study
# while the other runs the kill tests. Order changes only the wall time.
LONGEST_FIRST = ["test_reproduce.py", "test_kill_resume.py", "test_train_fsdp2.py", "test_reproduce_seeds.py",
                 "test_train_ddp.py", "test_remote_streams.py", "test_datamodule.py", "test_lm_eval.py",
                 "test_eval_tasks.py", "test_kill_resume_beside.py", "test_train_resume.py"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
