"""`codemix export hf`: transformers loads the folder with its Auto classes, offline, and computes the
same logits as codemix on the same tokens; layouts without an exact transformers twin are refused."""

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from codemix.cli import main
from codemix.errors import ConfigError
from codemix.export.hf import export_hf
from codemix.model.checkpoint import save_pretrained
from codemix.model.config import ModelConfig
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


def test_cli_exports_a_stage_directory_and_replaces_an_old_export(tokenizer_json, tmp_path):
    stage = tmp_path / "runs" / "tiny" / "cooldown-0123"
    tiny_checkpoint(tokenizer_json, stage / "final", block="parallel", norm="layernorm")
    out = tmp_path / "hf"
    out.mkdir()
    (out / "stale.bin").write_bytes(b"old")
    assert main(["export", "hf", str(stage), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert (out / "tokenizer.json").read_bytes() == (stage / "final" / "tokenizer.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "runs"]


def test_a_folder_without_a_checkpoint_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        export_hf(tmp_path, tmp_path / "hf")
