"""`export_hf`: a codemix checkpoint -> a folder transformers loads with AutoModelForCausalLM and
AutoTokenizer (config.json, model.safetensors, tokenizer files), written whole or not at all."""

import shutil
import tempfile
from pathlib import Path

from safetensors.torch import save_file

from codemix.atomic import replace_dir
from codemix.eval.results import resolve_target
from codemix.export.hf_config import architecture_for, hf_config
from codemix.export.hf_tokenizer import write_tokenizer_files
from codemix.export.hf_weights import hf_state_dict
from codemix.model.checkpoint import CONFIG, TOKENIZER, load_pretrained

HF_WEIGHTS = "model.safetensors"


def export_hf(checkpoint: str | Path, out_dir: str | Path) -> Path:
    source = resolve_target(checkpoint).weights_dir  # a checkpoint folder or a stage's final/
    model, cfg, _ = load_pretrained(source)
    arch = architecture_for(cfg, origin=str(source / CONFIG))  # refuse before writing anything
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        special_ids = write_tokenizer_files(source / TOKENIZER, tmp, cfg.max_seq_len)
        state = hf_state_dict(model.state_dict(), cfg, arch)
        save_file(state, tmp / HF_WEIGHTS, metadata={"format": "pt"})
        dtype = next(iter(state.values())).dtype
        hf_config(cfg, arch, dtype, special_ids).save_pretrained(tmp)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
