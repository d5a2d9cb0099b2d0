"""The memory-lean loss equals the plain full-logits cross-entropy, values and gradients (fp32, CPU)."""

import pytest
import torch
import torch.nn.functional as F

from codemix.config.model import ModelConfig
from codemix.model.loss import chunked_linear_cross_entropy, liger_available, linear_cross_entropy
from codemix.model.transformer import Decoder
from codemix.train.module import per_sample_loss


def _inputs(n: int = 37, d: int = 16, v: int = 101, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, dtype=torch.float64).float().requires_grad_()
    weight = torch.randn(v, d, generator=g).mul(0.3).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, targets


@pytest.mark.parametrize("chunk_tokens", [1, 8, 37, 4096])
def test_chunked_loss_and_gradients_equal_full_logits(chunk_tokens):
    hidden, weight, targets = _inputs()
    upstream = torch.rand(hidden.shape[0])  # a non-uniform incoming gradient, as per-source weights give
    expected = F.cross_entropy(hidden @ weight.T, targets, reduction="none")
    (expected * upstream).sum().backward()
    want_hidden, want_weight = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None

    got = chunked_linear_cross_entropy(hidden, weight, targets, chunk_tokens)
    (got * upstream).sum().backward()
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(hidden.grad, want_hidden, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weight.grad, want_weight, rtol=1e-5, atol=1e-6)


def test_chunk_size_must_be_positive():
    hidden, weight, targets = _inputs()
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunked_linear_cross_entropy(hidden, weight, targets, 0)


def _tiny_model(**overrides) -> Decoder:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=97, d_model=32, n_layers=4, n_heads=4, max_seq_len=32, **overrides)
    return Decoder(cfg)


def _grads(model: Decoder, ids: torch.Tensor, loss_fn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = loss_fn(model, ids)
    loss.mean().backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _full_logits_loss(model: Decoder, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none").view(ids.shape[0], -1).mean(1)


@pytest.mark.parametrize("tied", [True, False])
def test_training_loss_equals_full_logits_path_with_gradients(tied):
    model = _tiny_model(tie_embeddings=tied)
    ids = torch.randint(0, 97, (3, 17), generator=torch.Generator().manual_seed(2))
    want_loss, want = _grads(model, ids, _full_logits_loss)
    got_loss, got = _grads(model, ids, per_sample_loss)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-6, atol=1e-6)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("every", [1, 2, 3])
def test_activation_checkpointing_keeps_gradients(every):
    model = _tiny_model()
    ids = torch.randint(0, 97, (2, 17), generator=torch.Generator().manual_seed(3))
    want_loss, want = _grads(model, ids, per_sample_loss)
    model.set_activation_checkpointing(every)
    got_loss, got = _grads(model, ids, per_sample_loss)
    torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=0)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-8, msg=name)


def test_activation_checkpointing_recomputes_only_the_chosen_blocks():
    model = _tiny_model()
    model.set_activation_checkpointing(2)
    assert [model._recomputed(layer) for layer in range(4)] == [True, False, True, False]
    model.eval()
    assert not any(model._recomputed(layer) for layer in range(4))
    with pytest.raises(ValueError, match="interval"):
        model.set_activation_checkpointing(-1)


@pytest.mark.gpu
@pytest.mark.skipif(not liger_available(), reason="needs CUDA and liger-kernel")
def test_liger_fused_loss_matches_chunked_on_cuda():
    hidden, weight, targets = (t.detach().cuda() for t in _inputs(n=512, d=64, v=1000))
    hidden.requires_grad_()
    weight.requires_grad_()
    fused = linear_cross_entropy(hidden, weight, targets)
    fused.sum().backward()
    fused_grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    chunked = chunked_linear_cross_entropy(hidden, weight, targets, 128)
    chunked.sum().backward()
    torch.testing.assert_close(fused, chunked, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused_grads[0], hidden.grad, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(fused_grads[1], weight.grad, rtol=1e-3, atol=1e-4)
