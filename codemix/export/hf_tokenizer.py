"""Tokenizer files for transformers: the checkpoint's tokenizer.json byte for byte (so its hash, and
so the token ids, stay those training used) plus the configs that make AutoTokenizer return a
PreTrainedTokenizerFast with codemix's eos/bos/pad tokens."""

import shutil
from pathlib import Path

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from codemix.data.tokenizer import BOS, EOS, PAD

SPECIAL_TOKENS = {"eos": EOS, "bos": BOS, "pad": PAD}


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """Role -> id of those special tokens the tokenizer has (a role it lacks is left unset rather
    than added, which would create an id the model has no embedding for)."""
    ids = {role: tokenizer.token_to_id(token) for role, token in SPECIAL_TOKENS.items()}
    return {role: i for role, i in ids.items() if i is not None}


def write_tokenizer_files(tokenizer_json: Path, out_dir: Path, max_length: int) -> dict[str, int]:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json into out_dir; returns the
    special token ids declared."""
    ids = special_token_ids(Tokenizer.from_file(str(tokenizer_json)))
    fast = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json), model_max_length=max_length, clean_up_tokenization_spaces=False,
        **{f"{role}_token": SPECIAL_TOKENS[role] for role in ids},
    )
    fast.save_pretrained(out_dir)
    # save_pretrained re-serialises tokenizer.json; the original bytes keep the tokenizer hash.
    shutil.copyfile(tokenizer_json, out_dir / "tokenizer.json")
    return ids
