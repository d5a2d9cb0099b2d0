"""`codemix export hf`: transformers loads the folder with its Auto classes, offline, and computes the
same logits as codemix on the same tokens; layouts without an exact transformers twin are refused."""

import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from codemix.cli import main
from codemix.errors import ConfigError
from codemix.export.hf import export_hf
from codemix.model.checkpoint import save_pretrained
from codemix.config.model import ModelConfig
from codemix.model.transformer import Decoder

TEXT = "def parse(line):\n    key, _, value = line.partition('=')\n    return key.strip(), value  # The cat sat."


def tiny_checkpoint(tokenizer_json: Path, out: Path, **layout) -> Decoder:
    """A randomly initialised decoder saved with save_pretrained; norm gains moved off 1 so a norm
    mapped to the wrong place changes the logits."""
    vocab = Tokenizer.from_file(str(tokenizer_json)).get_vocab_size()
    cfg = ModelConfig(vocab_size=vocab, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=128, **layout)
    torch.manual_seed(0)
    model = Decoder(cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.add_(0.2 * torch.randn_like(param))
    save_pretrained(model, cfg, tokenizer_json, out)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer_json(small_corpus: Path) -> Path:
    return small_corpus / "tokenizer.json"


@pytest.mark.parametrize("layout, architecture", [
    (dict(block="parallel", norm="layernorm", tie_embeddings=True), "CohereForCausalLM"),
    (dict(block="parallel", norm="layernorm", tie_embeddings=False), "CohereForCausalLM"),
    (dict(block="sequential", norm="rmsnorm", tie_embeddings=True), "LlamaForCausalLM"),
    (dict(block="sequential", norm="rmsnorm", tie_embeddings=False), "LlamaForCausalLM"),
])
def test_transformers_computes_the_same_logits(layout, architecture, tokenizer_json, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    model = tiny_checkpoint(tokenizer_json, tmp_path / "checkpoint", **layout)
    export_hf(tmp_path / "checkpoint", tmp_path / "hf")

    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True, dtype=torch.float32)
    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert type(hf_model).__name__ == architecture
    assert type(hf_tokenizer) is PreTrainedTokenizerFast
    codemix_tokenizer = Tokenizer.from_file(str(tokenizer_json))
    assert {hf_tokenizer.eos_token, hf_tokenizer.bos_token, hf_tokenizer.pad_token} == {"<|endoftext|>", "<|bos|>", "<|pad|>"}
    assert hf_tokenizer.eos_token_id == codemix_tokenizer.token_to_id("<|endoftext|>") == hf_model.config.eos_token_id

    ids = codemix_tokenizer.encode(TEXT).ids
    assert hf_tokenizer(TEXT)["input_ids"] == ids
    tokens = torch.tensor([ids, ids[::-1]])
    with torch.no_grad():
        expected, got = model(tokens), hf_model(tokens).logits
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("block, norm", [("parallel", "layernorm"), ("sequential", "rmsnorm")])
def test_the_export_computes_the_same_logits_on_cuda(block, norm, tokenizer_json, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_checkpoint(tokenizer_json, tmp_path / "checkpoint", block=block, norm=norm).cuda()
    export_hf(tmp_path / "checkpoint", tmp_path / "hf")
    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True, dtype=torch.float32).cuda()
    ids = Tokenizer.from_file(str(tokenizer_json)).encode(TEXT).ids
    tokens = torch.tensor([ids, ids[::-1]], device="cuda")
    with torch.no_grad():
        expected, got = model(tokens), hf_model(tokens).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)  # CUDA kernels order sums differently


@pytest.mark.parametrize("block, norm", [("parallel", "rmsnorm"), ("sequential", "layernorm")])
def test_layouts_without_an_exact_twin_are_refused_before_writing(block, norm, tokenizer_json, tmp_path, capsys):
    tiny_checkpoint(tokenizer_json, tmp_path / "checkpoint", block=block, norm=norm)
    code = main(["export", "hf", str(tmp_path / "checkpoint"), str(tmp_path / "hf")])
    error = capsys.readouterr().err
    assert code == 2
    assert f"block={block!r} with norm={norm!r}" in error and "model_config.json" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no output, no temporaries


EXPORTED = ["codemix_export.json", "config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
            "tokenizer_config.json"]


def _stage(tokenizer_json: Path, root: Path) -> Path:
    stage = root / "runs" / "tiny" / "cooldown-0123"
    tiny_checkpoint(tokenizer_json, stage / "final", block="parallel", norm="layernorm")
    (stage / "lineage.json").write_text("{}")
    return stage


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_error_naming(capsys, path: Path | str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("codemix: error: ") and str(path) in err, err
    return err


def test_cli_exports_a_stage_directory_and_overwrites_only_a_previous_export(tokenizer_json, tmp_path, capsys):
    stage = _stage(tokenizer_json, tmp_path)
    out = tmp_path / "hf"
    assert main(["export", "hf", str(stage), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == EXPORTED
    assert (out / "tokenizer.json").read_bytes() == (stage / "final" / "tokenizer.json").read_bytes()
    capsys.readouterr()

    assert main(["export", "hf", str(stage), str(out)]) == 2  # exists: only with --overwrite
    assert "--overwrite" in _one_error_naming(capsys, out)
    (out / "stale.bin").write_bytes(b"old")
    assert main(["export", "hf", str(stage), str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == EXPORTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "runs"]  # no temporaries left


def test_a_folder_codemix_did_not_write_is_never_replaced(tokenizer_json, tmp_path, capsys):
    stage = _stage(tokenizer_json, tmp_path)
    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "paper.tex").write_text("keep me")
    (mine / "config.json").write_text("{}")
    kept = _tree(mine)
    for flags in ([], ["--overwrite"]):
        assert main(["export", "hf", str(stage), str(mine), *flags]) == 2
        _one_error_naming(capsys, mine)
        assert _tree(mine) == kept
    a_file = tmp_path / "model.bin"
    a_file.write_bytes(b"weights")
    assert main(["export", "hf", str(stage), str(a_file), "--overwrite"]) == 2
    _one_error_naming(capsys, a_file)
    assert a_file.read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "model.bin", "runs"]


@pytest.mark.parametrize("where", ["stage", "stage/final", "stage/eval/hf", "stage/..", "stage/../../.."])
def test_the_checkpoint_its_stage_and_their_ancestors_are_refused_outright(where, tokenizer_json, tmp_path, capsys):
    stage = _stage(tokenizer_json, tmp_path)
    before = _tree(tmp_path)
    out = Path(where.replace("stage", str(stage)))
    for flags in ([], ["--overwrite"]):
        assert main(["export", "hf", str(stage), str(out), *flags]) == 2
        _one_error_naming(capsys, out)
        assert main(["export", "hf", str(stage / "final"), str(out), *flags]) == 2
        _one_error_naming(capsys, out)
    assert _tree(tmp_path) == before
    assert not [p for p in tmp_path.rglob("*tmp*")]


def test_the_working_directory_is_refused(tokenizer_json, tmp_path, capsys, monkeypatch):
    stage = _stage(tokenizer_json, tmp_path)
    here = tmp_path / "work"
    here.mkdir()
    (here / "todo.txt").write_text("keep me")
    monkeypatch.chdir(here)
    for out in (".", "..", str(here)):
        assert main(["export", "hf", str(stage), out, "--overwrite"]) == 2
        _one_error_naming(capsys, out)
    assert _tree(here) == {"todo.txt": b"keep me"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "work"]


def test_a_killed_exports_temporaries_are_swept_by_the_next(tokenizer_json, tmp_path):
    import subprocess
    import sys

    stage = _stage(tokenizer_json, tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".hf.tmp-{int(dead.stdout)}-x1y2"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    live = tmp_path / f".hf.tmp-{os.getpid()}-mine"  # this process's own: never touched
    live.mkdir()
    assert main(["export", "hf", str(stage), str(tmp_path / "hf")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "hf", "runs"]


def test_a_folder_without_a_checkpoint_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        export_hf(tmp_path, tmp_path / "hf")
