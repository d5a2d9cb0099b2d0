"""Presets: the documented table is what the code computes, formula counts equal real (meta-device)
models, and bad names or overrides are clear errors."""

import pytest
import torch

from codemix.errors import ConfigError
from codemix.config import presets
from codemix.config.presets import PRESETS, preset
from codemix.model.sizes import parameter_count
from codemix.model.transformer import Decoder


def documented_rows() -> dict[str, dict[str, str]]:
    lines = [line for line in presets.__doc__.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row)) for row in rows}


def test_table_documents_every_preset():
    assert set(documented_rows()) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_documented_row_matches_the_config(name):
    row, cfg = documented_rows()[name], preset(name)
    number = lambda key: int(row[key].replace(",", ""))  # noqa: E731
    assert (row["block"], row["norm"]) == (cfg.block, cfg.norm)
    assert (number("d_model"), number("layers"), number("head_dim"), number("ffn")) == (
        cfg.d_model, cfg.n_layers, cfg.head_dim, cfg.ffn_dim)
    assert row["heads (kv)"] == f"{cfg.n_heads} ({cfg.kv_heads})"
    assert (number("vocab"), number("max_seq")) == (cfg.vocab_size, cfg.max_seq_len)
    assert number("parameters") == parameter_count(cfg)
    assert number("without embedding") == parameter_count(cfg, include_embedding=False)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_formula_matches_a_meta_device_model(name):
    cfg = preset(name)
    with torch.device("meta"):  # shapes only: the 2.8b model allocates nothing
        model = Decoder(cfg)
    assert model.num_parameters() == parameter_count(cfg)
    assert model.num_parameters(include_embedding=False) == parameter_count(cfg, include_embedding=False)


def test_study_sizes_are_the_papers():
    assert parameter_count(preset("470m")) == pytest.approx(470e6, rel=0.01)
    assert parameter_count(preset("2.8b")) == pytest.approx(2.8e9, rel=0.01)
    for name in ("470m", "2.8b"):
        cfg = preset(name)
        assert (cfg.vocab_size, cfg.block, cfg.tie_embeddings) == (256000, "parallel", True)


def test_tiny_allocates_and_runs():
    model = Decoder(preset("tiny"))
    assert 1e6 < model.num_parameters() < 3e6
    assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 8192)


def test_overrides_replace_fields():
    cfg = preset("tiny", vocab_size=2048, n_kv_heads=1)
    assert (cfg.vocab_size, cfg.kv_heads, cfg.d_model) == (2048, 1, 128)
    assert preset("tiny").vocab_size == 8192  # the preset itself is unchanged


def test_unknown_preset_and_key_are_named():
    with pytest.raises(ConfigError, match=r"preset 'huge' is not one of \['2.8b', '470m'"):
        preset("huge")
    with pytest.raises(ConfigError, match=r"preset 'tiny'.*\['widht'\]"):
        preset("tiny", widht=3)
    with pytest.raises(ConfigError, match=r"model.n_kv_heads=3"):
        preset("tiny", n_kv_heads=3)
