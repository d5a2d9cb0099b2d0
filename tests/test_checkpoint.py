"""save_pretrained / load_pretrained: exact round trip, tied weights, atomic replace, clear errors."""

import json
import os
import stat
import subprocess
import sys

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from codemix.atomic import TMP_MARK
from codemix.errors import ConfigError
from codemix.leftovers import sweep_leftovers
from codemix.model.checkpoint import WEIGHTS, load_pretrained, save_pretrained
from codemix.config.model import ModelConfig
from codemix.model.transformer import Decoder

TEXT = ["def add(a, b):\n    return a + b\n", "The cat sat on the mat.", "for i in range(10): print(i)"] * 20


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|bos|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(TEXT, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def small(**overrides) -> ModelConfig:
    return ModelConfig(**(dict(vocab_size=300, d_model=32, n_layers=2, n_heads=4, max_seq_len=32) | overrides))


@pytest.mark.parametrize("cfg", [small(), small(tie_embeddings=False, block="sequential", norm="rmsnorm",
                                                n_kv_heads=2)], ids=["tied-parallel", "untied-sequential"])
def test_round_trip_is_exact(cfg, tokenizer_json, tmp_path):
    torch.manual_seed(0)
    model = Decoder(cfg)
    out = save_pretrained(model, cfg, tokenizer_json, tmp_path / "final")
    loaded, loaded_cfg, tokenizer = load_pretrained(out)
    assert loaded_cfg == cfg
    assert not loaded.training
    original = model.state_dict()
    assert loaded.state_dict().keys() == original.keys()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    if cfg.tie_embeddings:
        assert loaded.output_weight is loaded.embed.weight  # still tied, not two copies
    ids = torch.tensor([tokenizer.encode(TEXT[0]).ids])
    assert tokenizer.to_str() == Tokenizer.from_file(str(tokenizer_json)).to_str()
    with torch.no_grad():
        assert torch.equal(loaded(ids), model.eval()(ids))


def test_saving_again_replaces_the_folder_and_leaves_no_temporaries(tokenizer_json, tmp_path):
    first, second = Decoder(small()), Decoder(small())
    save_pretrained(first, first.cfg, tokenizer_json, tmp_path / "final")
    save_pretrained(second, second.cfg, tokenizer_json, tmp_path / "final")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == [
        "model.safetensors", "model_config.json", "tokenizer.json"]
    loaded, _, _ = load_pretrained(tmp_path / "final")
    assert torch.equal(loaded.embed.weight, second.embed.weight)


def test_missing_file_names_the_folder(tokenizer_json, tmp_path):
    out = save_pretrained(Decoder(small()), small(), tokenizer_json, tmp_path / "final")
    (out / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match=r"final: not a pretrained-model folder \(no tokenizer.json\)"):
        load_pretrained(out)


def test_config_that_does_not_fit_the_weights_is_an_error(tokenizer_json, tmp_path):
    out = save_pretrained(Decoder(small()), small(), tokenizer_json, tmp_path / "final")
    (out / "model_config.json").write_text(json.dumps(small(d_model=64).to_dict()))
    with pytest.raises(ConfigError, match="weights do not match"):
        load_pretrained(out)


def test_missing_tokenizer_is_refused_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        save_pretrained(Decoder(small()), small(), tmp_path / "nope.json", tmp_path / "final")
    assert not (tmp_path / "final").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_folder_and_files_get_the_modes_of_any_new_file(umask, tokenizer_json, tmp_path):
    previous = os.umask(umask)
    try:
        out = save_pretrained(Decoder(small()), small(), tokenizer_json, tmp_path / "final")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask  # 0755 under the usual umask, not mkdtemp's 0700
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o666 & ~umask}


def test_a_killed_writers_temporaries_are_swept_and_a_live_ones_kept(tokenizer_json, tmp_path):
    """The temp folder is named with the writer's pid, so the next writer can tell a dead writer's."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f".final{TMP_MARK}{dead.pid}-abc123"  # what a kill during save_pretrained leaves
    killed.mkdir()
    (killed / WEIGHTS).write_bytes(b"half the weights")
    live = tmp_path / f".final{TMP_MARK}{os.getppid()}-def456"
    live.mkdir()
    assert sweep_leftovers(tmp_path / "final") == [killed]
    assert live.is_dir() and not killed.exists()
    save_pretrained(Decoder(small()), small(), tokenizer_json, tmp_path / "final")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "final"]


def test_every_file_and_folder_is_fsynced_before_the_rename_and_the_parent_after(tokenizer_json, tmp_path,
                                                                                  monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def noting_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def noting_replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", noting_fsync)
    monkeypatch.setattr(os, "replace", noting_replace)
    out = save_pretrained(Decoder(small()), small(), tokenizer_json, tmp_path / "final")
    (rename,) = [e for e in events if e[0] == "replace"]
    _, tmp, target = rename
    assert target == str(out)
    before = {path for kind, path, *_ in events[:events.index(rename)] if kind == "fsync"}
    assert before == {tmp, *(os.path.join(tmp, p.name) for p in out.iterdir())}
    assert events[-1] == ("fsync", str(tmp_path))  # the rename itself made durable


def test_a_failed_save_leaves_the_previous_folder_and_no_temporaries(tokenizer_json, tmp_path, monkeypatch):
    import codemix.model.checkpoint as checkpoint

    out = save_pretrained(Decoder(small()), small(), tokenizer_json, tmp_path / "final")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_pretrained(Decoder(small(d_model=64)), small(d_model=64), tokenizer_json, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
