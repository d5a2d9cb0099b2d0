"""`codemix recipe show RECIPE [key=value ...]` and `codemix recipe plan RECIPE|DIR [key=value ...]`.

show: the resolved recipe, stage by stage, each value with the file (or override) it came from, and
each stage's plan: steps, warmup and decay, batch split, tokens per source, parent, identity.
plan: for one recipe, each stage's steps, batch split and per-device memory estimate against the
recipe's device and the 80 GB / 141 GB devices the paper recipes target; for a directory of recipes,
the study: its distinct stages, which arms share which, and the tokens to train.
Neither builds anything: a stage's data plan and identity need its corpus built, and say so otherwise."""

import argparse
import dataclasses
from pathlib import Path

from codemix.model.memory import GIB


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("recipe", help="inspect a recipe (or a directory of recipes) before training")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the resolved recipe with the origin of every value, and its plan")
    plan = actions.add_parser("plan", help="steps, batch split and memory per stage; or a directory as one study")
    for action, target in ((show, "recipe YAML"), (plan, "recipe YAML, or a directory of recipes")):
        action.add_argument("recipe", help=target)
        action.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
        action.add_argument("--home", help="root for corpora and runs (default: $CODEMIX_HOME or ./.codemix)")
    plan.add_argument("--vocab-size", type=int, help="the corpus's vocabulary (default: the corpus's when "
                                                     "built, else the model preset's)")
    show.set_defaults(func=run_show)
    plan.set_defaults(func=run_plan)


def run_show(args: argparse.Namespace) -> int:
    from codemix.config.recipe import load_recipe, value_origins
    from codemix.config.seeds import seed_runs

    recipe = load_recipe(args.recipe, args.overrides)
    origins = value_origins(args.recipe, args.overrides)
    runs = seed_runs(recipe)  # one per seed when the stages list seeds; the plan shown is the first's
    plans = [_try_plan(run, args.home) for run in runs]
    plan, why_not = plans[0]
    print(f"recipe {recipe.name} ({recipe.source_path})")
    for base in recipe.base_chain:
        print(f"  base {base}")
    for section in ("model", "data", "trainer"):
        _print_values(section, dataclasses.asdict(getattr(recipe, section)), origins, indent="  ")
    if plan is not None:
        print(f"  corpus {plan.corpus.name} ({plan.corpus.path}), tokenizer {plan.corpus.tokenizer_hash}")
        model = plan.stages[0].model.to_dict()
        print("  model resolved: " + ", ".join(f"{key}={value}" for key, value in model.items()))
    for name, stage in recipe.stages.items():
        stage_plan = plan.stage(name) if plan is not None else None
        print(f"\nstage {name}" + (f" [{stage_plan.identity}] -> {stage_plan.run_dir.path}" if stage_plan else ""))
        for k, (other, _) in enumerate(plans[1:], start=2):
            if other is not None:
                seed_plan = other.stage(name)
                print(f"  seed run {k}: seed {seed_plan.config.seed} [{seed_plan.identity}] -> {seed_plan.run_dir.path}")
        _print_values(f"stages.{name}", dataclasses.asdict(stage), origins, indent="  ")
        if stage_plan is None:
            print(f"  plan: {why_not}")
            continue
        parent = stage_plan.parent
        print(f"  plan: {stage_plan.steps} steps (warmup {stage_plan.warmup_steps}, decay {stage_plan.decay_steps}) "
              f"of {stage_plan.data.global_batch} x {stage_plan.data.seq_len} = {stage_plan.batch_tokens:,} tokens; "
              f"micro batch {stage.micro_batch} x {stage_plan.accumulation} accumulation on {stage_plan.world_size} "
              f"rank(s); parent {'none (scratch)' if parent is None else f'{parent.ref} [{parent.identity}]'}")
        for source in stage_plan.data.drawn:
            print(f"    {source.source.name:<26} {source.source.kind:<14} share {source.share:.4f}  "
                  f"{source.tokens:>14,} tokens  {source.passes:.2f} passes")
    return 0


def _print_values(prefix: str, values: dict, origins: dict[str, str], indent: str) -> None:
    for key, value in values.items():
        dotted = f"{prefix}.{key}"
        if isinstance(value, dict) and key != "mixture":
            _print_values(dotted, value, origins, indent)
            continue
        origin = origins.get(dotted) or next((o for k, o in origins.items() if k.startswith(dotted + ".")),
                                             "default")
        print(f"{indent}{dotted} = {value!r}  ({origin})")


def _try_plan(recipe, home):
    """The recipe's plan when its corpora are built, else (None, why)."""
    from codemix.errors import ConfigError
    from codemix.plan.stage import built_corpus_of, plan_recipe

    try:
        return plan_recipe(recipe, built_corpus_of(home), home), ""
    except ConfigError as err:
        return None, str(err)


def run_plan(args: argparse.Namespace) -> int:
    if Path(args.recipe).is_dir():
        return _plan_study(Path(args.recipe), args.overrides, args.home)
    return _plan_memory(args)


def _plan_study(directory: Path, overrides: list[str], home) -> int:
    """A directory of recipes as one study: each distinct stage once, with the arms that share it."""
    from codemix.config.recipe import load_recipe, recipe_files
    from codemix.config.seeds import seed_runs
    from codemix.plan.identity import stage_identity

    arms: dict[str, list[str]] = {}
    tokens: dict[str, int] = {}
    notes = []
    runs = [(run, len(seeded)) for path in recipe_files(directory)
            for seeded in [seed_runs(load_recipe(path, overrides))] for run in seeded]
    for recipe, seeds in runs:
        path = Path(recipe.source_path)
        plan, why_not = _try_plan(recipe, home)
        if plan is not None:
            planned = [(stage.name, stage.identity, stage.tokens) for stage in plan.stages]
        else:  # identities from the recipe alone: which arms share a stage holds, the hashes are provisional
            notes.append(f"{path.name}: {why_not}")
            provisional = lambda other: f"unbuilt:{other.data.corpus}"  # noqa: E731
            planned = [(name, "~" + stage_identity(recipe, name, provisional)[1:], stage.tokens)
                       for name, stage in recipe.stages.items()]
        for name, identity, stage_tokens in planned:
            seed = f" (seed {recipe.stages[name].seed})" if seeds > 1 else ""
            arms.setdefault(identity, []).append(f"{recipe.name}/{name}{seed}")
            tokens[identity] = stage_tokens
    print(f"study {directory}: {len(arms)} distinct stages, {sum(len(a) for a in arms.values())} arm stages, "
          f"{sum(tokens.values()):,} tokens to train")
    for identity, shared in arms.items():
        print(f"  [{identity}] {tokens[identity]:>18,} tokens  {shared[0]}"
              + (f"  (shared with {', '.join(shared[1:])})" if len(shared) > 1 else ""))
    for note in notes:
        print(f"  not planned ('~' identities are provisional): {note}")
    return 0


def _plan_memory(args: argparse.Namespace) -> int:
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
