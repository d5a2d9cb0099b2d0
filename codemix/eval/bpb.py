"""Continuous scores: bits per byte of each example's gold continuation.

At small scale accuracy sits at chance for every arm; the likelihood of the right answer still moves
(OLMES, DataDecide), so every task is also scored by it. lm-evaluation-harness's convention:

    bpb = sum over the continuation's tokens of -log2 p(token | everything before) / UTF-8 bytes of the continuation

The gold continuation is, per kind: multiple choice, the correct choice given its context (the very
log-likelihood accuracy already computed); generation (TriviaQA, NQ), the first listed answer given
the prompt, as a few-shot demonstration writes it; code, the dataset's canonical solution given the
prompt. Lower is better. This one function serves `codemix eval` offline and a stage's in-loop val_bpb_tasks
(codemix.train.val_bpb) alike."""

import math

from codemix.eval.loglik import encode_pair, score
from codemix.eval.tasks.base import CodeProblem, Generation, Instance, MultipleChoice

BPB = "bpb"


def bits_per_byte(logprob: float, continuation: str) -> float:
    """`logprob`: natural-log probability of `continuation` (summed over its tokens)."""
    return -logprob / math.log(2) / max(1, len(continuation.encode("utf-8")))


def gold_pair(instance: Instance) -> tuple[str, str]:
    """(context, gold continuation) of one instance."""
    if isinstance(instance, MultipleChoice):
        return instance.contexts[instance.gold], instance.continuations[instance.gold]
    if isinstance(instance, Generation):
        return instance.prompt, " " + instance.answers[0]
    if isinstance(instance, CodeProblem):
        return instance.prompt, instance.reference
    raise TypeError(f"no gold continuation for {type(instance).__name__}")


def add_gold_bpb(instances: list[Instance], records: list[dict], metrics: dict, model, batch_size: int) -> None:
    """Write each record's `bpb` and the task's mean `bpb` into `records` and `metrics`. Multiple
    choice reuses the gold choice's log-likelihood already in the record; the others are scored here."""
    pairs = [gold_pair(instance) for instance in instances]
    if all("logprobs" in record for record in records):
        logprobs = [record["logprobs"][record["gold"]] for record in records]
    else:
        max_len = model.decoder.cfg.max_seq_len
        encoded = [encode_pair(model.tokenizer, context, gold, model.eos_id, max_len) for context, gold in pairs]
        logprobs = [scored.logprob for scored in score(model.decoder, encoded, batch_size)]
    for record, logprob, (_, gold) in zip(records, logprobs, pairs):
        record[BPB] = bits_per_byte(logprob, gold)
    metrics[BPB] = sum(r[BPB] for r in records) / len(records) if records else float("nan")
