"""Pretrained-weights folders: model.safetensors + model_config.json + tokenizer.json.

This is the hand-off format between training (a stage's final weights), evaluation and export.
A folder is written whole by codemix.atomic.atomic_dir (a temporary sibling `.<name>.tmp-<pid>-...`,
which the next writer sweeps when that process is gone, fsynced and renamed into place), so a reader
never sees a half-written one."""

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from codemix.atomic import atomic_dir
from codemix.config.model import ModelConfig
from codemix.errors import ConfigError
from codemix.model.transformer import Decoder

WEIGHTS = "model.safetensors"
CONFIG = "model_config.json"
TOKENIZER = "tokenizer.json"


def save_pretrained(model: Decoder, cfg: ModelConfig, tokenizer_json_path: str | Path,
                    out_dir: str | Path) -> Path:
    """Write `out_dir` atomically (a previous folder there is replaced); returns its path."""
    return save_weights(model.state_dict(), cfg, tokenizer_json_path, out_dir)


def save_weights(state: dict[str, torch.Tensor], cfg: ModelConfig, tokenizer_json_path: str | Path,
                 out_dir: str | Path) -> Path:
    """save_pretrained from a Decoder's state dict (e.g. one gathered from shards)."""
    out_dir = Path(out_dir)
    tokenizer_json_path = Path(tokenizer_json_path)
    if not tokenizer_json_path.is_file():
        raise ConfigError(f"{tokenizer_json_path}: no tokenizer.json to save with the model")
    with atomic_dir(out_dir) as tmp:
        # A tied head is not a separate tensor in the state dict, so nothing is shared on disk.
        state = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
        save_file(state, tmp / WEIGHTS, metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        shutil.copyfile(tokenizer_json_path, tmp / TOKENIZER)
    return out_dir


def load_pretrained(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[Decoder, ModelConfig, Tokenizer]:
    """Read a folder written by save_pretrained; the model comes back in eval mode on `device`."""
    path = Path(path)
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if not (path / name).is_file():
            raise ConfigError(f"{path}: not a pretrained-model folder (no {name})")
    try:
        cfg = ModelConfig.from_dict(json.loads((path / CONFIG).read_text()), origin=str(path / CONFIG))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:  # malformed, or not text at all
        raise ConfigError(f"{path / CONFIG}: not valid JSON: {err}") from err
    try:
        state = load_file(path / WEIGHTS, device=str(device))
    except SafetensorError as err:
        raise ConfigError(f"{path / WEIGHTS}: unreadable safetensors file: {err}") from err
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = Decoder(cfg)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise ConfigError(f"{path / WEIGHTS}: weights do not match {path / CONFIG}: {err}") from err
    try:
        tokenizer = Tokenizer.from_file(str(path / TOKENIZER))
    except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception for any unreadable file
        raise ConfigError(f"{path / TOKENIZER}: not a tokenizers JSON file: {str(err).splitlines()[0]}") from err
    return model.eval(), cfg, tokenizer
