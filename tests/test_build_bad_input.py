"""Hostile input to `codemix data build`: corrupt compressed files, sources with no text, a missing
sbatch, a URL as --out, a cloud client not installed, two builds of one folder at once. Each is one
`codemix: error:` line naming the value (or skipped and counted), refused before any task runs."""

import gzip
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from codemix.cli import main
from codemix.data.build import LOCK_FILE
from codemix.data.corpus import Corpus
from codemix.data.sources import ReadStats, read_source
from codemix.data.tokenizer import save_tokenizer, train_bpe

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


def write_texts(folder: Path, files: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        (folder / f"doc{n}.txt").write_text("\n".join(" ".join(rng.choices(WORDS, k=12)) for _ in range(30)))
    return folder


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small BPE trained here (under a second): the builds below load it instead of training one."""
    texts = write_texts(tmp_path_factory.mktemp("texts"), 10, seed=1)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    save_tokenizer(train_bpe((p.read_text() for p in texts.iterdir()), 512, 2), path)
    return path


def write_spec(folder: Path, sources: dict[str, dict], tokenizer: Path | None) -> Path:
    trained = {"vocab_size": 512, "sample_bytes_per_source": 20_000}
    spec = {"name": "bad", "seq_len": 32, "val_fraction": 0.1,
            "tokenizer": {"path": str(tokenizer)} if tokenizer else trained,
            "sources": [{"name": name, "kind": "text", "licence": "test", "reader": reader}
                        for name, reader in sources.items()]}
    path = folder / "data.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert err.startswith("codemix: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def corrupt_gzips(folder: Path) -> list[Path]:
    """Random bytes named .gz, and a real gzip cut in half (its end-of-stream marker missing)."""
    broken, truncated = folder / "broken.txt.gz", folder / "truncated.txt.gz"
    broken.write_bytes(random.Random(2).randbytes(2000))
    whole = gzip.compress(os.urandom(20_000))
    truncated.write_bytes(whole[: len(whole) // 2])
    return [broken, truncated]


@pytest.mark.parametrize("given", [True, False], ids=["tokenizer.path", "trained"])
def test_a_corrupt_gzip_is_skipped_counted_and_named(given, tokenizer, tmp_path, capsys, caplog):
    texts = write_texts(tmp_path / "texts", 20)
    bad = corrupt_gzips(texts)
    stats = ReadStats()
    spec_path = write_spec(tmp_path, {"texts": {"type": "dir", "path": str(texts)}}, tokenizer if given else None)
    from codemix.config.data_spec import load_data_spec

    documents = list(read_source(load_data_spec(spec_path).sources[0], stats))
    assert (len(documents), stats.files, stats.skipped_unreadable) == (20, 22, 2)

    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("999999999 nowhere\n")  # a lock file no process holds: a killed build's
    with caplog.at_level(logging.WARNING, logger="codemix.data.sources"):
        assert main(["data", "build", str(spec_path), "--out", str(out), "--workers", "1"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert all(f"{path}: skipped, unreadable: " in warned for path in bad)
    manifest = Corpus.open(out).manifest("texts")
    assert manifest["read"]["documents"] == 20 and manifest["skipped"]["unreadable"] == 2


def test_a_jsonl_gzip_cut_short_keeps_its_lines_before_the_cut(tmp_path):
    from codemix.config.data_spec import ReaderSpec, SourceSpec

    whole = gzip.compress(b"".join(b'{"text": "record %d %s"}\n' % (n, os.urandom(8).hex().encode())
                                   for n in range(2000)))
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    stats = ReadStats()
    source = SourceSpec(name="j", kind="text", licence="test",
                        reader=ReaderSpec(type="jsonl", path=str(tmp_path / "cut.jsonl.gz")))
    documents = list(read_source(source, stats))
    assert 0 < len(documents) < 2000 and stats.skipped_unreadable == 1


def test_a_source_with_no_text_is_refused_before_any_task(tokenizer, tmp_path, capsys):
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "a.bin").write_bytes(b"\x7fELF\x00\x01" * 100)
    corrupt_gzips(unreadable)
    spec_path = write_spec(tmp_path, {"texts": {"type": "dir", "path": str(write_texts(tmp_path / "texts", 20))},
                                      "unreadable": {"type": "dir", "path": str(unreadable)}}, tokenizer)
    out = tmp_path / "out"
    assert main(["data", "build", str(spec_path), "--out", str(out)]) == 2
    assert one_error_line(capsys) == (f"codemix: error: {spec_path}: source 'unreadable': {unreadable}: no UTF-8 text "
                                      "in 3 file(s) (1 binary, 0 not UTF-8, 2 unreadable)\n")
    assert not list(out.glob(".build-*")) and not (out / "texts").exists()  # no task ran, no source was built


def test_slurm_without_sbatch_is_refused_before_any_work(tokenizer, tmp_path, capsys, monkeypatch):
    spec_path = write_spec(tmp_path, {"texts": {"type": "dir", "path": str(write_texts(tmp_path / "texts", 2))}},
                           tokenizer)
    monkeypatch.setenv("PATH", str(tmp_path / "no_bin"))
    out = tmp_path / "out"
    assert main(["data", "build", str(spec_path), "--out", str(out), "--executor", "slurm", "--partition", "cpu"]) == 2
    assert "--executor slurm: no sbatch on PATH" in one_error_line(capsys) and not out.exists()


@pytest.mark.parametrize("url", ["s3://bucket/corpus", "gs://bucket/corpus", "file:///tmp/corpus"])
def test_a_url_as_out_is_refused_before_any_work(url, tokenizer, tmp_path, capsys, monkeypatch):
    spec_path = write_spec(tmp_path, {"texts": {"type": "dir", "path": str(write_texts(tmp_path / "texts", 2))}},
                           tokenizer)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    assert main(["data", "build", str(spec_path), "--out", url]) == 2
    err = one_error_line(capsys)
    assert f"out folder {url!r} is a URL" in err and "upload that folder" in err
    assert sorted(tmp_path.iterdir()) == before  # no ./s3:/bucket folder


def test_a_gs_corpus_without_its_client_names_the_package(tmp_path, capsys):
    try:
        import google.cloud.storage  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("google-cloud-storage is installed here")
    assert main(["data", "inspect", "gs://bucket/corpus", "--home", str(tmp_path / "home")]) == 2
    assert one_error_line(capsys) == ("codemix: error: gs://bucket/corpus: reading it needs the google-cloud-storage "
                                      "package, not installed here (pip install google-cloud-storage beside codemix)\n")


def test_a_held_lock_refuses_the_build_naming_its_pid(tokenizer, tmp_path, capsys):
    spec_path = write_spec(tmp_path, {"texts": {"type": "dir", "path": str(write_texts(tmp_path / "texts", 2))}},
                           tokenizer)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("not codemix's")
    holder = ("import fcntl, os, socket, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
              "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'{os.getpid()} {socket.gethostname()}'.encode()); "
              "print(flush=True); time.sleep(60)")
    with subprocess.Popen([sys.executable, "-c", holder, str(out / LOCK_FILE)], stdout=subprocess.PIPE) as other:
        other.stdout.readline()  # it holds the lock
        assert main(["data", "build", str(spec_path), "--out", str(out)]) == 2
        other.kill()
    assert one_error_line(capsys) == (f"codemix: error: {out}: another build (pid {other.pid}) is writing to it; "
                                      "wait for it or stop it\n")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "mine.txt"]


def test_two_builds_of_one_folder_at_once_one_is_refused(tokenizer, tmp_path):
    texts = write_texts(tmp_path / "texts", 20)
    # a source whose task takes seconds: the first build holds the lock while the second starts
    slow = {"type": "command", "command": ["sh", "-c", f"sleep 4; cat {texts}/*"], "split_on": "\n"}
    spec_path = write_spec(tmp_path, {"texts": {"type": "dir", "path": str(texts)}, "slow": slow}, tokenizer)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "codemix.cli", "data", "build", str(spec_path), "--out", str(out),
               "--workers", "1"]
    builds = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [build.communicate(timeout=120)[1] for build in builds]
    codes = [build.returncode for build in builds]
    assert sorted(codes) == [0, 2], errors
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert errors[loser] == (f"codemix: error: {out}: another build (pid {builds[winner].pid}) is writing to it; "
                             "wait for it or stop it\n")
    assert Corpus.open(out).source_names == ["texts", "slow"]
