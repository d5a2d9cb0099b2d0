"""`codemix data build`, `codemix data add` and `codemix data inspect` (`codemix data synth` is the
synth package's, which sits above data: codemix/cli.py adds it to this group)."""

import argparse
import shlex

from codemix.config.data_spec import load_data_spec, quickstart_spec_path
from codemix.data.corpus import CORPUS_FILE, Corpus, resolve_corpus
from codemix.errors import ConfigError
from codemix.paths import corpora_dir


def add_parser(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the `data` group; returns its actions, to which packages above data add theirs."""
    data = subparsers.add_parser("data", help="build and inspect tokenized corpora")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    build = actions.add_parser("build", help="read, clean, tokenize and shard the sources of a data YAML")
    build.add_argument("spec", nargs="?", help="data YAML describing the sources")
    build.add_argument("--quickstart", action="store_true", help="build the packaged quickstart corpus")
    build.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="override a data YAML value, e.g. --set seq_len=256 (repeatable)")
    build.add_argument("--out", help="corpus folder (default: <home>/corpora/<spec name>)")
    build.add_argument("--home", help="codemix home (default: $CODEMIX_HOME, else ./.codemix)")
    build.add_argument("--workers", "--processes", type=int, default=2, dest="processes",
                       help="build tasks run at once, one process each (default: 2)")
    build.add_argument("--executor", choices=("local", "slurm", "ray"), default="local",
                       help="where the build's tasks run: this machine (default), SLURM job arrays, or the Ray "
                            "cluster this process is connected to")
    build.add_argument("--partition", help="SLURM partition (with --executor slurm)")
    build.add_argument("--time", default="24:00:00", help="SLURM time limit per task (default: 24:00:00)")
    build.add_argument("--cpus-per-task", type=int, default=1, help="SLURM CPUs per task (default: 1)")
    build.add_argument("--mem-per-cpu-gb", type=int, default=2, help="SLURM memory per CPU in GB (default: 2)")
    build.set_defaults(func=run_build)

    add = actions.add_parser("add", help="add sources to a built corpus, with its tokenizer")
    add.add_argument("corpus", help="corpus folder or name (under <home>/corpora)")
    add.add_argument("sources", help="YAML with a `sources:` list, as in a data YAML")
    add.add_argument("--home", help="codemix home (default: $CODEMIX_HOME, else ./.codemix)")
    add.add_argument("--workers", "--processes", type=int, default=2, dest="processes",
                     help="build tasks run at once, one process each (default: 2)")
    add.set_defaults(func=run_add)

    inspect = actions.add_parser("inspect", help="per-source table of a built corpus")
    inspect.add_argument("corpus", nargs="?", help="corpus folder or name (under <home>/corpora)")
    inspect.add_argument("--quickstart", action="store_true", help="inspect the quickstart corpus")
    inspect.add_argument("--home", help="codemix home (default: $CODEMIX_HOME, else ./.codemix)")
    inspect.set_defaults(func=run_inspect)
    return actions


def run_build(args: argparse.Namespace) -> int:
    from codemix.data.build import build_corpus
    from codemix.data.inspect import format_corpus

    spec_path = _one_of(args.spec, args.quickstart, "a data YAML")
    spec_path = quickstart_spec_path() if args.quickstart else spec_path
    _check_processes(args.processes)
    spec = load_data_spec(spec_path, args.overrides)
    command = shlex.join(
        ["codemix", "data", "build", "--quickstart" if args.quickstart else str(spec_path)]
        + [f"--set={o}" for o in args.overrides]
    )
    executor = _executor(args)
    # --out as given: build_corpus refuses a URL, which a Path would turn into a folder (s3:/bucket)
    out = build_corpus(spec, args.out or corpora_dir(args.home) / spec.name, processes=args.processes,
                       command=command, progress=lambda line: print(line, flush=True), executor=executor,
                       origin=str(spec_path))
    if (out / CORPUS_FILE).is_file():
        print(format_corpus(Corpus.open(out)))
        print(f"corpus {spec.name} written to {out}")
    return 0


def _executor(args: argparse.Namespace):
    from codemix.data.executors import LocalExecutor, RayExecutor, SlurmExecutor
    from codemix.data.tasks import SlurmSettings

    if args.executor == "local":
        return LocalExecutor(args.processes)
    if args.executor == "ray":
        return RayExecutor(args.processes)
    if not args.partition:
        raise ConfigError("--executor slurm: give the partition with --partition NAME")
    return SlurmExecutor(SlurmSettings(partition=args.partition, time=args.time, cpus_per_task=args.cpus_per_task,
                                       mem_per_cpu_gb=args.mem_per_cpu_gb))


def run_add(args: argparse.Namespace) -> int:
    from codemix.config.data_spec import load_source_list
    from codemix.data.build import add_sources
    from codemix.data.inspect import format_corpus

    _check_processes(args.processes)
    sources = load_source_list(args.sources)
    command = shlex.join(["codemix", "data", "add", args.corpus, args.sources])
    corpus_dir = resolve_corpus(args.corpus, args.home)
    add_sources(corpus_dir, sources, processes=args.processes, command=command,
                progress=lambda line: print(line, flush=True), origin=args.sources)
    print(format_corpus(Corpus.open(corpus_dir)))
    print(f"added {', '.join(s.name for s in sources)} to {corpus_dir}")
    return 0


def _check_processes(processes: int) -> None:
    if processes < 1:
        raise ConfigError(f"--workers {processes}: must be at least 1")


def run_inspect(args: argparse.Namespace) -> int:
    from codemix.data.inspect import format_corpus

    name = _one_of(args.corpus, args.quickstart, "a corpus folder or name")
    name = load_data_spec(quickstart_spec_path()).name if args.quickstart else name
    print(format_corpus(Corpus.open(resolve_corpus(name, args.home))))
    return 0


def _one_of(value: str | None, quickstart: bool, what: str) -> str | None:
    if quickstart and value:
        raise ConfigError(f"give {what} ({value!r}) or --quickstart, not both")
    if not quickstart and not value:
        raise ConfigError(f"give {what} or --quickstart")
    return value
