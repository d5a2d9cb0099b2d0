"""`codemix train [--home DIR] RECIPE.yaml [key=value ...]`: train a recipe's stages in order."""

import argparse
import shlex

LAUNCH_HELP = """\
Completed stages are reused (also by other recipes that share them); an interrupted stage resumes
from its last checkpoint when the same command runs again.

Many devices: set trainer.devices / trainer.num_nodes / trainer.strategy in the recipe, then
  one node, Lightning launches the ranks:  codemix train RECIPE.yaml trainer.devices=8 trainer.strategy=ddp
  torchrun:  torchrun --nproc_per_node 8 --nnodes 2 ... $(which codemix) train RECIPE.yaml trainer.devices=8 trainer.num_nodes=2
  SLURM:     srun --ntasks-per-node 8 codemix train RECIPE.yaml trainer.devices=8 trainer.num_nodes=N
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a recipe's stages (init -> CPT -> cooldown)", description=__doc__.splitlines()[0],
        epilog=LAUNCH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("recipe", help="recipe YAML")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="recipe overrides, e.g. stages.cooldown.tokens=131072")
    parser.add_argument("--home", help="root for corpora and runs (default: $CODEMIX_HOME or ./.codemix)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codemix.train.run import say, train_recipe  # Lightning is imported only when training

    command = shlex.join(["codemix", "train", args.recipe, *args.overrides]
                         + (["--home", args.home] if args.home else []))
    results = train_recipe(args.recipe, args.overrides, home=args.home, command=command)
    say("\nstage      identity          status    final weights")
    for result in results:
        status = "reused" if result.reused else "trained"
        say(f"{result.name:<10} {result.identity:<17} {status:<9} {result.dir.final}")
    return 0
