"""The corpus tokenizer: a byte-level BPE trained with HF `tokenizers`, or a tokenizer.json loaded from disk.

Either way the tokenizer saved next to the shards carries the three special tokens below, and is
identified by the hash of the saved file's bytes (the `tokenizer_hash` that stages and evaluation
check against)."""

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from codemix.atomic import write_text_atomic
from codemix.errors import ConfigError
from codemix.hashing import file_sha256

EOS = "<|endoftext|>"
BOS = "<|bos|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (EOS, BOS, PAD)

HASH_CHARS = 16
UINT16_VOCAB_LIMIT = 1 << 16


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    """Train a byte-level BPE; every byte is in the initial alphabet, so any text round-trips."""
    if vocab_size < len(pre_tokenizers.ByteLevel.alphabet()) + len(SPECIAL_TOKENS):
        raise ConfigError(f"tokenizer vocab_size {vocab_size} is smaller than the 256-byte alphabet plus special tokens")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | Path, origin: str = "") -> Tokenizer:
    """Load a tokenizer.json, adding any of the special tokens it lacks (so ids exist for all three)."""
    path = Path(path)
    where = f"{origin}: " if origin else ""
    if not path.is_file():
        raise ConfigError(f"{where}tokenizer file {path} does not exist")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on a malformed file
        raise ConfigError(f"{where}{path} is not a tokenizers JSON file: {err}") from err
    missing = [token for token in SPECIAL_TOKENS if tokenizer.token_to_id(token) is None]
    if missing:
        tokenizer.add_special_tokens(missing)
    return tokenizer


def vocab_size(tokenizer: Tokenizer) -> int:
    return tokenizer.get_vocab_size(with_added_tokens=True)


def special_ids(tokenizer: Tokenizer) -> dict[str, int]:
    return {
        "eos_id": tokenizer.token_to_id(EOS),
        "bos_id": tokenizer.token_to_id(BOS),
        "pad_id": tokenizer.token_to_id(PAD),
    }


def token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= UINT16_VOCAB_LIMIT else "uint32"


def file_hash(path: str | Path) -> str:
    """sha256 of the file's bytes, first 16 hex characters: the tokenizer's identity."""
    return file_sha256(path)[:HASH_CHARS]


def save_tokenizer(tokenizer: Tokenizer, path: Path) -> str:
    """Save atomically (fsynced temp file renamed into place) and return the saved file's hash. The
    bytes are those of `tokenizer.save` (pretty JSON): the hash is the corpus's tokenizer identity."""
    write_text_atomic(Path(path), tokenizer.to_str(pretty=True))
    return file_hash(path)
