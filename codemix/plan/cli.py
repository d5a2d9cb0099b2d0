"""`codemix recipe plan RECIPE.yaml [key=value ...]`: each stage's steps, batch split and per-device
memory estimate, against the recipe's device and the 80 GB / 141 GB devices the paper recipes target."""

import argparse

from codemix.model.memory import GIB


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("recipe", help="inspect a recipe before training it")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    plan = actions.add_parser("plan", help="steps, batch split and memory estimate per stage",
                              description=__doc__.splitlines()[0])
    plan.add_argument("recipe", help="recipe YAML")
    plan.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
    plan.add_argument("--vocab-size", type=int, help="the corpus's vocabulary (default: the model preset's)")
    plan.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codemix.config.recipe import load_recipe
    from codemix.plan.memory import REFERENCE_DEVICES_GB, device_memory_bytes, stage_memory

    recipe = load_recipe(args.recipe, args.overrides)
    trainer = recipe.trainer
    ranks = trainer.devices * trainer.num_nodes
    print(f"recipe {recipe.name} ({recipe.source_path}): {trainer.strategy} on {trainer.devices} device(s) x "
          f"{trainer.num_nodes} node(s), {trainer.precision}, activation checkpointing "
          f"{trainer.activation_checkpointing or 'off'}")
    devices = [("recipe's device", device_memory_bytes(recipe))] if device_memory_bytes(recipe) else []
    devices += [(f"{gb:g} GB", int(gb * 1e9)) for gb in REFERENCE_DEVICES_GB]
    header = ("stage", "tokens", "steps", "micro", "accum", "params", "grads", "optim", "activ", "loss",
              "other", "total GiB")
    widths = (10, 17, 7, 5, 5, 6, 6, 6, 6, 6, 6, 9)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths)) + "  " + "  ".join(f"fits {n}" for n, _ in devices))
    for row in stage_memory(recipe, args.vocab_size):
        stage = recipe.stages[row.stage]
        accumulation = stage.global_batch // (stage.micro_batch * ranks)
        gib = row.estimate.gib()
        cells = [row.stage, f"{stage.tokens:,}", stage.steps, stage.micro_batch, accumulation,
                 *(gib[k] for k in ("parameters", "gradients", "optimizer", "activations", "loss", "overhead", "total"))]
        fits = ["yes" if row.estimate.total <= size else "NO" for _, size in devices]
        print(" ".join(f"{c:>{w}}" for c, w in zip(cells, widths)) + "  "
              + "  ".join(f"{f:>{len('fits ' + n)}}" for f, (n, _) in zip(fits, devices)))
    print(f"(estimates per device; 1 GiB = {GIB:,} bytes; see codemix/model/memory.py for what is counted)")
    return 0
