"""Bits per byte of the gold continuation, against a hand computation on the tiny trained model."""

import math

import torch

from codemix.data.tokenizer import EOS
from codemix.eval.bpb import bits_per_byte, gold_pair
from codemix.eval.runner import EvalOptions, Model, run_task
from codemix.eval.tasks.base import Generation, MultipleChoice, TaskData, TaskSpec
from codemix.model.checkpoint import load_pretrained
from tests.test_eval_scoring import ADD, SUB, shared_checkpoint


def hand_bpb(model: Model, context: str, continuation: str) -> float:
    """One full forward and log-softmax; -log2 p summed over the continuation's tokens / its UTF-8 bytes."""
    context_ids = [model.eos_id, *model.tokenizer.encode(context, add_special_tokens=False).ids]
    continuation_ids = model.tokenizer.encode(continuation, add_special_tokens=False).ids
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model.decoder(ids[:, :-1]).float(), dim=-1)[0]
    nats = -sum(float(logp[len(context_ids) - 1 + i, t]) for i, t in enumerate(continuation_ids))
    return nats / math.log(2) / len(continuation.encode("utf-8"))


def test_gold_bpb_matches_a_hand_computation_for_every_kind():
    decoder, _, tokenizer = load_pretrained(shared_checkpoint())
    model = Model(decoder, tokenizer, tokenizer.token_to_id(EOS))
    mc = MultipleChoice("sky", ("Question: What colour is the sky on a clear day?\nAnswer:",) * 2, (" green", " blue"), 1)
    qa = Generation("cow", "Question: What do cows drink?\nAnswer:", ("water", "milk"))
    cases = {"multiple_choice": [mc], "generation": [qa], "code": [ADD, SUB]}
    for kind, instances in cases.items():
        spec = TaskSpec(f"t-{kind}", "reasoning", kind, lambda i=instances: TaskData(list(i), {}), stop=("\n",),
                        max_new_tokens=8)
        result = run_task(spec, model, EvalOptions())
        for instance, record in zip(instances, result["records"]):
            assert math.isclose(record["bpb"], hand_bpb(model, *gold_pair(instance)), rel_tol=1e-3, abs_tol=1e-5), kind
        assert math.isclose(result["metrics"]["bpb"], sum(r["bpb"] for r in result["records"]) / len(instances))
    # The memorised answer costs few bits; the same question with a made-up answer costs many.
    assert hand_bpb(model, qa.prompt, " water") < hand_bpb(model, qa.prompt, " gravel")


def test_bits_per_byte_counts_utf8_bytes():
    assert math.isclose(bits_per_byte(-math.log(2) * 4, "é ab"), 4 / 5)  # é is 2 bytes
