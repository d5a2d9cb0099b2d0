"""`export_hf`: a codemix checkpoint -> a folder transformers loads with AutoModelForCausalLM and
AutoTokenizer (config.json, model.safetensors, tokenizer files), written whole or not at all.

An export never deletes what codemix did not write: an existing destination is replaced only when
asked (`overwrite`) and only when it is a previous export (it holds EXPORT_MARK); a destination that
is, holds or lies inside the checkpoint, or holds the working directory, is refused outright."""

import json
from pathlib import Path

from safetensors.torch import save_file

from codemix.atomic import atomic_dir
from codemix.errors import ConfigError
from codemix.eval.results import resolve_target
from codemix.export.hf_config import architecture_for, hf_config
from codemix.export.hf_tokenizer import write_tokenizer_files
from codemix.export.hf_weights import hf_state_dict
from codemix.leftovers import sweep_leftovers
from codemix.model.checkpoint import CONFIG, TOKENIZER, load_pretrained

HF_WEIGHTS = "model.safetensors"
EXPORT_MARK = "codemix_export.json"  # written into every export: what --overwrite may replace


def export_hf(checkpoint: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    target = resolve_target(checkpoint)
    source = target.weights_dir  # a checkpoint folder or a stage's final/
    given = Path(out_dir)
    out = check_destination(given, [Path(checkpoint), source, *([target.stage_dir] if target.stage_dir else [])],
                            overwrite)
    model, cfg, _ = load_pretrained(source)
    arch = architecture_for(cfg, origin=str(source / CONFIG))  # refuse before writing anything
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(out)  # temporaries of an export that was killed
    with atomic_dir(out) as tmp:
        special_ids = write_tokenizer_files(source / TOKENIZER, tmp, cfg.max_seq_len)
        state = hf_state_dict(model.state_dict(), cfg, arch)
        save_file(state, tmp / HF_WEIGHTS, metadata={"format": "pt"})
        dtype = next(iter(state.values())).dtype
        hf_config(cfg, arch, dtype, special_ids).save_pretrained(tmp)
        mark = {"format": "hf", "architecture": arch.name, "source": str(source.resolve())}
        (tmp / EXPORT_MARK).write_text(json.dumps(mark, indent=2) + "\n")
    return given


def check_destination(out: Path, protected: list[Path], overwrite: bool) -> Path:
    """The resolved destination, or a ConfigError naming `out` when writing there could delete
    something codemix did not write."""
    where = out.resolve()
    for path in protected:
        kept = path.resolve()
        if where == kept or kept in where.parents:
            raise ConfigError(f"{out}: is inside the checkpoint {path}; export to a folder outside it")
        if where in kept.parents:
            raise ConfigError(f"{out}: holds the checkpoint {path}; export to a folder outside it")
    here = Path.cwd().resolve()
    if where == here or where in here.parents:
        raise ConfigError(f"{out}: is the working directory or one above it; export to a new folder")
    if not (out.exists() or out.is_symlink()):
        return where
    if not overwrite:
        raise ConfigError(f"{out}: already exists; pass --overwrite to replace a previous export")
    if out.is_symlink() or not (out / EXPORT_MARK).is_file():
        raise ConfigError(f"{out}: exists and is not a codemix export (no {EXPORT_MARK}); "
                          "refusing to replace it, export to a new folder")
    return where
