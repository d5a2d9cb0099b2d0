"""lm-evaluation-harness model "codemix": a codemix checkpoint scored by codemix's own evaluation code.

Log-likelihoods come from codemix.eval.loglik (the same tokenisation and scoring as `codemix eval`) and
generations from codemix.eval.generation (KV cache, stop sequences), so a harness task and codemix's
own run of the same prompts give the same numbers.

Use, with the `harness` extra installed:

    python -m codemix.lm_eval_adapter --model codemix --model_args checkpoint=PATH --tasks arc_easy

(the arguments are lm_eval's own; PATH is a pretrained-model folder or a stage directory). lm_eval
0.4.x finds models only in its own registry, so this entry imports the adapter (registering
"codemix") and then runs lm_eval's command line. Releases of lm_eval that discover plugins through
the `lm_eval.models` entry-point group take `lm_eval --model codemix ...` directly: codemix's
pyproject.toml declares that entry point."""

import logging
import sys
from collections import defaultdict

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from codemix.errors import ConfigError
from codemix.eval.generation import GenerationConfig, generate
from codemix.eval.harness import load_model
from codemix.eval.loglik import encode_pair, score
from codemix.eval.results import resolve_target

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_MAX_GEN_TOKS = 256
logger = logging.getLogger(__name__)


@register_model("codemix")
class CodemixLM(LM):
    def __init__(self, checkpoint: str, device: str | None = None, batch_size: int | str = 16,
                 dtype: str = "float32", **_harness_options) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ConfigError(f"model_args dtype={dtype!r} is not one of {sorted(DTYPES)}")
        self._device = _pick_device(device)
        # lm_eval passes "auto" when asked to search for a batch size; the scorer's default then.
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16
        loaded = load_model(resolve_target(checkpoint), device=str(self._device))
        self.model = loaded.decoder.to(DTYPES[dtype])
        self.cfg, self.tokenizer, self.eos_id = self.model.cfg, loaded.tokenizer, loaded.eos_id

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        pairs = [encode_pair(self.tokenizer, context, continuation, self.eos_id, self.cfg.max_seq_len)
                 for context, continuation in (r.args for r in requests)]
        results = [(s.logprob, s.greedy) for s in score(self.model, pairs, self.batch_size)]
        for request, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results

    def loglikelihood_rolling(self, requests: list[Instance]) -> list[float]:
        """Each text scored whole, from an eos prefix, in windows of max_seq_len that predict every
        token once with as much context as fits (lm_eval's window scheme)."""
        windows, owner = [], []
        for index, (text,) in enumerate(r.args for r in requests):
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
            for context, predicted in map(make_disjoint_window, get_rolling_token_windows(
                    ids, prefix_token=self.eos_id, max_seq_len=self.cfg.max_seq_len, context_len=1)):
                windows.append((context + predicted, len(predicted)))
                owner.append(index)
        totals = [0.0] * len(requests)
        for index, scored in zip(owner, score(self.model, windows, self.batch_size)):
            totals[index] += scored.logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy (or sampled, when the task asks for a temperature) continuations cut at the task's
        `until` strings; requests with the same generation settings run as one batch."""
        groups: dict[GenerationConfig, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            groups[self._generation_config(request.args[1])].append(index)
        outputs: list[str] = [""] * len(requests)
        for cfg, indices in groups.items():
            prompts = [requests[i].args[0] for i in indices]
            for index, (text,) in zip(indices, generate(self.model, self.tokenizer, prompts, cfg, self.eos_id)):
                outputs[index] = text
                self.cache_hook.add_partial("generate_until", requests[index].args, text)
        return outputs

    def _generation_config(self, gen_kwargs: dict) -> GenerationConfig:
        until = gen_kwargs.get("until") or ()
        until = (until,) if isinstance(until, str) else tuple(until)
        temperature = float(gen_kwargs.get("temperature", 0.0)) if gen_kwargs.get("do_sample") else 0.0
        # A small model's context may be shorter than the task's budget: keep at least one prompt token.
        max_new = min(int(gen_kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)), self.cfg.max_seq_len - 1)
        return GenerationConfig(max_new_tokens=max_new, stop=until, temperature=temperature,
                                batch_size=self.batch_size)


def _pick_device(requested: str | None) -> torch.device:
    """The requested device; lm_eval's CLI asks for cuda:0 unless told otherwise, so on a machine
    without CUDA that default becomes the CPU (with a warning) instead of an error."""
    if requested is None or (requested.startswith("cuda") and not torch.cuda.is_available()):
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if requested is not None:
            logger.warning("device %s requested but CUDA is not available: using %s", requested, chosen)
        return chosen
    return torch.device(requested)


def main() -> None:
    """lm_eval's command line, with the "codemix" model registered (importing this module did that)."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv[0] = "lm_eval"
    cli_evaluate()


if __name__ == "__main__":
    main()
