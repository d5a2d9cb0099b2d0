"""`codemix` command line: one dispatcher, each command group in its own module.

Groups are imported lazily so `codemix data ...` never pays for importing Lightning."""

import argparse
import importlib
import sys

from codemix.errors import CodemixError

# command -> module exposing add_parser(subparsers); the parser it adds sets `func(args) -> int`.
# Every module here must import: a broken one is an error, never a command quietly missing.
COMMAND_MODULES = {
    "data": "codemix.data.cli",
    "recipe": "codemix.plan.cli",
    "train": "codemix.train.cli",
    "eval": "codemix.eval.cli",
    "reproduce": "codemix.study.cli",
    "report": "codemix.analysis.report_cli",
    "export": "codemix.export.cli",
    "mixture": "codemix.mixture_cli",
}
# command -> modules of packages above the group's own that add actions to it: each exposes
# add_actions(actions), given what the group's add_parser returned (`codemix data synth`).
GROUP_ACTIONS = {"data": ("codemix.synth.cli",)}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codemix", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMAND_MODULES else None
    for name, module_name in COMMAND_MODULES.items():
        if wanted is not None and name != wanted:
            subparsers.add_parser(name)  # listed in --help without importing it
            continue
        actions = importlib.import_module(module_name).add_parser(subparsers)
        for extension in GROUP_ACTIONS.get(name, ()):
            importlib.import_module(extension).add_actions(actions)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CodemixError as err:
        print(f"codemix: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
