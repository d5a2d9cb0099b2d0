"""MinHash near-duplicate removal, per source (`near_dedup: minhash`): planted near-copies of real
stdlib modules are dropped, the earliest source keeps its text, exact copies stay counted as
duplicates, a source without the option keeps its near-copies, and workers do not change the output."""

import sysconfig
from pathlib import Path

import yaml
from corpus_fixtures import corpus_bytes

from codemix.config.data_spec import load_data_spec
from codemix.data.build import build_corpus
from codemix.data.corpus import Corpus

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["textwrap", "shlex", "fnmatch", "bisect", "colorsys", "calendar", "getopt", "glob", "heapq", "netrc",
           "pprint", "sched"]


def near_copy(text: str, n: int) -> str:
    """The module with a few lines edited: what a vendored, lightly patched copy looks like."""
    lines = text.splitlines()
    for k in range(3):
        at = (k + 1) * len(lines) // 4
        lines[at] = f"{lines[at]}  # patched {n}.{k}"
    return "\n".join(lines)


def write_sources(root: Path, near_in_b: bool) -> Path:
    """`a`: six modules. `b`: near-copies of three of a's, one exact copy, its own five modules and a
    near-copy of one of them. `c` (no near_dedup): near-copies of two of a's."""
    texts = {name: (STDLIB / f"{name}.py").read_text() for name in MODULES}
    files = {
        "a": {name: texts[name] for name in MODULES[:6]},
        "b": {**{f"near_{name}": near_copy(texts[name], 1) for name in MODULES[:3]}, "exact": texts[MODULES[3]],
              **{name: texts[name] for name in MODULES[7:]}, "near_own": near_copy(texts[MODULES[7]], 2)},
        "c": {f"near_{name}": near_copy(texts[name], 3) for name in MODULES[4:6]},
    }
    for source, named in files.items():
        (root / source).mkdir(parents=True)
        for name, text in named.items():
            (root / source / f"{name}.py").write_text(text)
    spec = {
        "name": "near", "seq_len": 64, "val_fraction": 0.1, "seed": 0, "task_bytes": 60_000,
        "tokenizer": {"vocab_size": 512, "sample_bytes_per_source": 30_000, "min_frequency": 2},
        "sources": [{"name": name, "kind": "code", "licence": "PSF-2.0", "code_filters": False,
                     "reader": {"type": "dir", "path": str(root / name)},
                     **({"near_dedup": "minhash"} if name == "a" or (name == "b" and near_in_b) else {})}
                    for name in files],
    }
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"


def test_planted_near_duplicates_are_removed_and_counted(tmp_path: Path):
    spec = load_data_spec(write_sources(tmp_path / "in", near_in_b=True))
    one = build_corpus(spec, tmp_path / "one", processes=1, progress=lambda _: None)
    two = build_corpus(spec, tmp_path / "two", processes=2, progress=lambda _: None)
    assert corpus_bytes(one) == corpus_bytes(two)
    corpus = Corpus.open(two)
    a, b, c = (corpus.manifest(name) for name in ("a", "b", "c"))
    assert a["tasks"] > 1 and b["tasks"] > 1  # the pairs cross slices as well as sources
    assert (a["documents"], a["filters"]["near_duplicate"], a["filters"]["duplicate"]) == (6, 0, 0)
    # three near-copies of a's modules and one of its own; the exact copy counts as a duplicate only
    assert (b["documents"], b["filters"]["near_duplicate"], b["filters"]["duplicate"]) == (5, 4, 1)
    assert (c["documents"], c["filters"]["near_duplicate"]) == (2, 0)  # c does not ask for it


def test_without_the_option_near_copies_stay(tmp_path: Path):
    spec = load_data_spec(write_sources(tmp_path / "in", near_in_b=False))
    corpus = Corpus.open(build_corpus(spec, tmp_path / "out", processes=2, progress=lambda _: None))
    b = corpus.manifest("b")
    assert (b["documents"], b["filters"]["near_duplicate"], b["filters"]["duplicate"]) == (9, 0, 1)
