"""`codemix export hf CHECKPOINT OUT_DIR`: write a checkpoint as a Hugging Face transformers folder."""

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a checkpoint for other tools",
                                   description=__doc__.splitlines()[0])
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    hf = formats.add_parser(
        "hf", help="Hugging Face transformers folder (AutoModelForCausalLM + AutoTokenizer)",
        description="parallel+layernorm models export as CohereForCausalLM, sequential+rmsnorm as "
                    "LlamaForCausalLM; other layouts are refused.")
    hf.add_argument("checkpoint", help="a pretrained-model folder (model_config.json ...) or a stage directory")
    hf.add_argument("out_dir", help="a new folder to write, outside the checkpoint")
    hf.add_argument("--overwrite", action="store_true",
                    help="replace OUT_DIR if it is a previous codemix export (any other folder is refused)")
    hf.set_defaults(func=run_hf)


def run_hf(args: argparse.Namespace) -> int:
    from codemix.export.hf import export_hf  # transformers is imported only when exporting

    out = export_hf(args.checkpoint, args.out_dir, overwrite=args.overwrite)
    print(f"exported {args.checkpoint} -> {out}")
    return 0
