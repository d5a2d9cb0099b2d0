"""The corpus a benchmark reads: a name (under $CODEMIX_HOME/corpora, else ./.codemix/corpora) or a
path. The quickstart corpus is built from codemix's quickstart data YAML when it is missing, as
`codemix reproduce recipes/tiny` would, so the benchmarks run on a fresh clone."""

import os
from pathlib import Path

from codemix.config.data_spec import load_data_spec, quickstart_spec_path
from codemix.data.build import build_corpus
from codemix.data.corpus import CORPUS_FILE, Corpus, resolve_corpus
from codemix.paths import HOME_ENV, codemix_home

QUICKSTART = "quickstart"


def open_bench_corpus(name_or_path: str | os.PathLike) -> Corpus:
    path = resolve_corpus(name_or_path)
    if str(name_or_path) == QUICKSTART and not (path / CORPUS_FILE).is_file():
        print(f"benchmark: corpus {path} is missing: building it from {quickstart_spec_path()}", flush=True)
        build_corpus(load_data_spec(quickstart_spec_path()), path, command="benchmark: quickstart corpus")
    return Corpus.open(path)


def recorded_path(path: Path) -> str:
    """The corpus path as results record it: relative to the working directory, or to $CODEMIX_HOME,
    when inside it, so a committed result names no machine's directories."""
    resolved = path.resolve()
    for root, shown in ((Path.cwd(), ""), (codemix_home().resolve(), f"${HOME_ENV}/")):
        if resolved.is_relative_to(root):
            return shown + str(resolved.relative_to(root))
    return str(path)
