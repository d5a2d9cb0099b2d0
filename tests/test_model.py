"""The decoder: layouts wired as documented, causal, incremental decoding equals a full pass,
scaled init, config validation, parameter counts, and that it learns."""

import dataclasses
import math

import pytest
import torch

from codemix.errors import ConfigError
from codemix.config.model import ModelConfig
from codemix.model.sizes import parameter_count
from codemix.model.transformer import Decoder

VOCAB = 101


def small(**overrides) -> ModelConfig:
    values = dict(vocab_size=VOCAB, d_model=64, n_layers=2, n_heads=4, max_seq_len=64)
    return ModelConfig(**(values | overrides))


VARIANTS = {
    "parallel-layernorm-tied-mha": small(),
    "sequential-rmsnorm-untied-gqa": small(block="sequential", norm="rmsnorm", tie_embeddings=False,
                                          n_kv_heads=2),
    "parallel-rmsnorm-gqa1": small(norm="rmsnorm", n_kv_heads=1, ffn_hidden=96),
}


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: on a shared 2-core machine a second OpenMP thread only adds waiting
    (measured: 12 training steps 0.04 s with one thread, 1.9 s with two under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def model_for(cfg: ModelConfig, seed: int = 0) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(cfg).eval()


def ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", VARIANTS)
@torch.no_grad()
def test_incremental_decoding_equals_full_forward(name):
    model = model_for(VARIANTS[name])
    tokens = ids(2, 21)
    full = model(tokens)
    cache = model.new_cache(batch_size=2, max_len=32)
    pieces = [model(tokens[:, :8], cache=cache)]  # prompt
    pieces += [model(tokens[:, i:i + 1], cache=cache) for i in range(8, 15)]  # one token at a time
    pieces.append(model(tokens[:, 15:], cache=cache))  # a chunk after a cached prefix
    assert cache.length == 21
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "reference"])
@pytest.mark.parametrize("name", VARIANTS)
@torch.no_grad()
def test_a_left_padded_row_gives_the_logits_it_gives_alone(name, attention):
    """Generation batches prompts of different lengths by left padding: each row's real positions,
    in one pass and token by token through the cache, must give what the row gives unpadded."""
    model = model_for(dataclasses.replace(VARIANTS[name], attention=attention))
    rows = [ids(1, 13, seed=3)[0], ids(1, 6, seed=4)[0], ids(1, 9, seed=5)[0]]
    pad = torch.tensor([13 - len(row) for row in rows])
    batch = torch.stack([torch.cat([torch.full((int(p),), 7), row]) for p, row in zip(pad, rows)])
    full = model(batch, left_pad=pad)
    cache = model.new_cache(batch_size=3, max_len=16)
    stepped = torch.cat([model(batch[:, :10], cache=cache, left_pad=pad)]
                        + [model(batch[:, i:i + 1], cache=cache, left_pad=pad) for i in range(10, 13)], dim=1)
    for r, row in enumerate(rows):
        alone = model(row[None])[0]
        torch.testing.assert_close(full[r, int(pad[r]):], alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(stepped[r, int(pad[r]):], alone, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(full).all()  # the pad positions too: nothing NaN to leak through the values


@pytest.mark.parametrize("name", VARIANTS)
@torch.no_grad()
def test_future_tokens_do_not_change_past_logits(name):
    model = model_for(VARIANTS[name])
    a, b = ids(1, 12, seed=1), ids(1, 12, seed=2)
    b[:, :7] = a[:, :7]
    torch.testing.assert_close(model(a)[:, :7], model(b)[:, :7])
    assert not torch.allclose(model(a)[:, 7:], model(b)[:, 7:])


@torch.no_grad()
def test_parallel_block_reads_one_normed_input():
    block = model_for(small()).blocks[0]
    x = torch.randn(2, 5, 64)
    cos, sin = _angles(block, 5)
    h = block.attn_norm(x)
    expected = x + block.attn(h, cos, sin, None, 0) + block.mlp(h)
    assert block.mlp_norm is None
    torch.testing.assert_close(block(x, cos, sin, None), expected)


@torch.no_grad()
def test_sequential_block_feeds_attention_output_to_the_mlp():
    block = model_for(small(block="sequential")).blocks[0]
    x = torch.randn(2, 5, 64)
    cos, sin = _angles(block, 5)
    h = x + block.attn(block.attn_norm(x), cos, sin, None, 0)
    expected = h + block.mlp(block.mlp_norm(h))
    torch.testing.assert_close(block(x, cos, sin, None), expected)


def _angles(block, length):
    from codemix.model.rotary import rotary_angles

    return rotary_angles(block.attn.head_dim, 10000.0, 0, length, torch.device("cpu"))


def test_sdpa_and_reference_backends_give_the_same_model():
    tokens = ids(2, 16)
    with torch.no_grad():
        out = {b: model_for(small(n_kv_heads=2, attention=b))(tokens) for b in ("sdpa", "reference")}
    torch.testing.assert_close(out["sdpa"], out["reference"], atol=1e-5, rtol=1e-5)


def test_no_biases_and_scaled_init():
    cfg = small(d_model=256, n_layers=8, n_heads=4, tie_embeddings=False)
    model = model_for(cfg)
    for name, param in model.named_parameters():
        assert param.dim() == 2 or name.endswith("norm.weight"), name  # only matrices and norm gains
    block = model.blocks[3]
    assert block.attn.wq.weight.std().item() == pytest.approx(cfg.init_std, rel=0.05)
    residual_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
    assert block.attn.wo.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert block.mlp.down.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert torch.equal(block.attn_norm.weight, torch.ones(cfg.d_model))


def test_tied_head_is_the_embedding():
    model = model_for(small())
    assert model.output_weight is model.embed.weight
    assert list(model.state_dict()).count("embed.weight") == 1 and "lm_head.weight" not in model.state_dict()


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_formula_matches_the_allocated_model(name):
    cfg = VARIANTS[name]
    model = model_for(cfg)
    assert parameter_count(cfg) == model.num_parameters()
    assert parameter_count(cfg, include_embedding=False) == model.num_parameters(include_embedding=False)


def test_return_hidden_gives_what_the_head_reads():
    model = model_for(small())
    tokens = ids(1, 6)
    with torch.no_grad():
        hidden = model(tokens, return_hidden=True)
        torch.testing.assert_close(hidden @ model.output_weight.T, model(tokens))
    assert hidden.shape == (1, 6, 64)


def test_length_limits_are_errors():
    model = model_for(small(max_seq_len=16))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(ids(1, 17))
    cache = model.new_cache(1, 8)
    model(ids(1, 6), cache=cache)
    with pytest.raises(ValueError, match="KV cache full"):
        model(ids(1, 3), cache=cache)
    with pytest.raises(ValueError, match="max_len"):
        model.new_cache(1, 17)


def test_learns_a_repeated_sequence():
    torch.manual_seed(0)
    model = Decoder(small()).train()
    tokens = ids(2, 17)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(VOCAB), rel=0.1)  # near uniform at init
    assert losses[-1] < 0.2 * losses[0]


def test_ffn_rule_and_kv_default():
    cfg = ModelConfig(vocab_size=10, d_model=1024, n_layers=1, n_heads=8)
    assert cfg.ffn_dim == 2816  # 8/3 * 1024 = 2730.7, up to a multiple of 256
    assert cfg.kv_heads == 8
    assert small(ffn_hidden=100).ffn_dim == 100


@pytest.mark.parametrize("overrides,bad", [
    (dict(block="diagonal"), "model.block='diagonal'"),
    (dict(norm="batchnorm"), "model.norm='batchnorm'"),
    (dict(n_kv_heads=3), "model.n_kv_heads=3"),
    (dict(n_heads=5), "model.n_heads=5"),
    (dict(attention="fast"), "model.attention='fast'"),
    (dict(d_model=0), "model.d_model=0"),
])
def test_bad_config_values_are_named(overrides, bad):
    with pytest.raises(ConfigError) as err:
        small(**overrides)
    assert bad in str(err.value)


def test_from_dict_names_origin_and_unknown_keys():
    values = small().to_dict()
    assert ModelConfig.from_dict(values) == small()
    with pytest.raises(ConfigError, match=r"cfg.json: unknown model config keys \['widht'\]"):
        ModelConfig.from_dict(values | {"widht": 3}, origin="cfg.json")
    with pytest.raises(ConfigError, match="cfg.json.*vocab_size"):
        ModelConfig.from_dict({k: v for k, v in values.items() if k != "vocab_size"}, origin="cfg.json")
