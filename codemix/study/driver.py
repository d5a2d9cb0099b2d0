"""`codemix reproduce`: a study (the miniature by default) in one command.

1. Recipes: every `*.yaml` directly in RECIPE_DIR that names a recipe (`name:`). The pieces the arms
   compose (base.yaml, cooldown_*.yaml, arms/) have no name, and sub-folders are other studies
   (`--smoke` takes RECIPE_DIR/smoke/ instead).
2. Corpus: built from the recipes' `data.build` when missing. Every stage's mixture is then checked
   against it before any training: a recipe whose mixture names a source or kind the corpus lacks (the
   synthetic arms need `codemix data synth --add-to` first) is skipped and said so; any other bad stage stops
   the run up front.
3. Training: all stages form one graph keyed by stage identity, so a stage that several arms share
   trains once; recipes that start from another recipe's stage (`recipe:` parents) come after it.
   With `--seeds N` (or `seed:` lists in a recipe) every recipe is planned once per seed
   (codemix/config/seeds.py): each seed's stages have their own identities, and a stage that arms share
   is still trained once per seed.
4. Evaluation: every distinct stage on the study's suite at `limit` examples per task (`code_limit`
   per code task), keeping an existing eval/results.json when it scored the same identity with the
   same limits and tasks; stages are evaluated side by side, one per worker process
   (`--eval-workers`, default one per core; codemix/study/eval_workers.py).
5. Report: build_report over exactly the stages of this study, in <home>/reports/<name>/, plus
   reproduce.json (recipes, skipped ones, seeds, stage and token counts, wall times, load average).
   With `--judge SPEC` the study's win-rate pairs are judged first (codemix/study/judging.py) and the
   report shows them.

Interrupting (Ctrl-C, kill) loses at most the stage in flight: a re-run reuses completed stages and
evaluations and resumes a half-trained stage from its last checkpoint."""

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from codemix.atomic import write_json_atomic
from codemix.config.recipe import load_recipe, recipe_files
from codemix.config.recipe_schema import Recipe
from codemix.config.seeds import check_seeds_option, seed_runs
from codemix.config.stages import parent_of
from codemix.data.corpus import Corpus, read_json
from codemix.errors import ConfigError
from codemix.paths import reports_dir
from codemix.plan.stage import RecipePlan, StagePlan, built_corpus_of, plan_recipe

if TYPE_CHECKING:  # the report imports matplotlib: only a run pays for it
    from codemix.analysis.report import Report
    from codemix.study.judging import JudgeSpec

# Examples per task. A full-size evaluation scores thousands; on CPU the tiny study's ~25 stages get
# 40 per reasoning and knowledge task (360 reasoning examples: intervals a bootstrap can narrow) and
# 10 per code task, since generating token by token and running programs costs most (about 15 s a
# stage unloaded); the smoke study 2. The report's bootstrap intervals show how little that says.
DEFAULT_LIMIT = 40
DEFAULT_CODE_LIMIT = 10
SMOKE_LIMIT = 2
# Validation samples per source for the held-out loss (the eval default, 64, costs a stage about as
# much as ten training steps of the tiny model).
DEFAULT_HELDOUT_SAMPLES = 16
SMOKE_HELDOUT_SAMPLES = 2
SMOKE_DIR = "smoke"
SYNTHETIC = "synthetic"  # the kind the synthetic-code arms draw
SUITE = "paper"
REPRODUCE_FILE = "reproduce.json"

Say = Callable[[str], None]
Home = str | os.PathLike | None
StopCheck = Callable[[], None]  # raises KeyboardInterrupt once Ctrl-C was pressed


@dataclass
class Study:
    """The recipes of one directory as a graph of stages: one plan per recipe, parents first, so a stage
    shared by several arms appears once per arm (in `stages`) and is trained once (`distinct`)."""

    plans: list[RecipePlan]  # one per recipe and seed
    skipped: dict[str, str] = field(default_factory=dict)  # recipe file -> why it cannot run here

    @property
    def recipes(self) -> list[Recipe]:
        return [plan.recipe for plan in self.plans]

    @property
    def recipe_files(self) -> list[str]:
        return list(dict.fromkeys(recipe.source_path for recipe in self.recipes))

    @property
    def runs_per_recipe(self) -> dict[str, int]:
        """recipe file -> how many seeds it is trained with."""
        return {path: sum(1 for recipe in self.recipes if recipe.source_path == path) for path in self.recipe_files}

    @property
    def stages(self) -> list[StagePlan]:
        return [stage for plan in self.plans for stage in plan.stages]

    @property
    def distinct(self) -> list[StagePlan]:
        """One entry per identity, in training order: what is trained and evaluated."""
        seen: dict[str, StagePlan] = {}
        for stage in self.stages:
            seen.setdefault(stage.identity, stage)
        return list(seen.values())


def label(stage: StagePlan) -> str:
    return f"{stage.recipe.name}/{stage.name} (seed {stage.config.seed})"


@dataclass(frozen=True)
class Settings:
    limit: int
    code_limit: int
    heldout_samples: int

    @classmethod
    def for_run(cls, smoke: bool, limit: int | None, code_limit: int | None = None) -> "Settings":
        from codemix.eval.runner import check_limits

        check_limits(limit, code_limit)
        if smoke:
            default_limit, default_code_limit, heldout = SMOKE_LIMIT, SMOKE_LIMIT, SMOKE_HELDOUT_SAMPLES
        else:
            default_limit, default_code_limit, heldout = DEFAULT_LIMIT, DEFAULT_CODE_LIMIT, DEFAULT_HELDOUT_SAMPLES
        limit = default_limit if limit is None else limit
        return cls(limit, min(limit, default_code_limit) if code_limit is None else code_limit, heldout)

    @property
    def eval_options(self) -> dict[str, int]:
        """The options an evaluation's results.json records for these limits."""
        return {"limit": self.limit, "code_limit": self.code_limit}


# ---- planning ------------------------------------------------------------------------------------------
def study_dir(recipe_dir: str | os.PathLike, smoke: bool) -> Path:
    directory = Path(recipe_dir).resolve()
    if not directory.is_dir():
        raise ConfigError(f"{recipe_dir}: no such recipe directory")
    if smoke:
        directory = directory / SMOKE_DIR
        if not directory.is_dir():
            raise ConfigError(f"{recipe_dir}: --smoke needs a '{SMOKE_DIR}/' folder of recipes in it")
    return directory


def plan_study(directory: Path, home: Home, command: str, say: Say, seeds: int | None = None) -> Study:
    """Plan every recipe of `directory` (once per seed: codemix/config/seeds.py), building their corpora
    first when they are missing."""
    from codemix.train.corpora import prepare_corpora  # Lightning is imported only once the study runs

    plans, skipped = [], {}
    corpus_of = built_corpus_of(home)  # one opener for the study: each corpus is read once
    for recipe in _parents_first([load_recipe(path) for path in recipe_files(directory)]):
        prepare_corpora(recipe, home, command, say)
        corpus = corpus_of(recipe)
        missing = _missing_mixture_keys(recipe, corpus)
        if missing:
            skipped[recipe.source_path] = (
                f"its mixtures name {missing}, which the corpus {corpus.path} has neither as a source nor as a "
                "kind (add a synthetic source with --synth-generator SPEC, or `codemix data synth --generator "
                f"SPEC --out synth.jsonl --add-to {corpus.path}`)")
            say(f"skipping {Path(recipe.source_path).name}: {skipped[recipe.source_path]}")
            continue
        plans += [plan_recipe(run, corpus_of, home) for run in seed_runs(recipe, seeds)]
    return Study(plans, skipped)


def add_synthetic_source(directory: Path, generator: str, home: Home, command: str, say: Say) -> None:
    """`--synth-generator`: where an arm draws kind `synthetic` and its corpus has no such source,
    the generator solves the shipped problems and the verified solutions join the corpus (the corpus
    keeps its tokenizer: trained stages stay valid)."""
    from codemix.synth.pipeline import add_synthetic_source as add_to_corpus
    from codemix.train.corpora import ensure_corpus

    for path in recipe_files(directory):
        recipe = load_recipe(path)
        if SYNTHETIC not in _mixture_keys(recipe):
            continue
        corpus = ensure_corpus(recipe, home, command, say)
        if SYNTHETIC in {source.kind for source in corpus.sources}:
            continue
        out = corpus.path.with_name(f"{corpus.path.name}-synthetic.jsonl")
        say(f"corpus {corpus.path} has no synthetic source: {generator} solves the shipped problems")
        add_to_corpus(corpus.path, generator, out, command=command, progress=say)


def _mixture_keys(recipe: Recipe) -> set[str]:
    """The sources and kinds any stage of `recipe` draws from."""
    return {key for stage in recipe.stages.values() for key in stage.mixture}


def _missing_mixture_keys(recipe: Recipe, corpus: Corpus) -> list[str]:
    known = {source.name for source in corpus.sources} | {source.kind for source in corpus.sources}
    return sorted(_mixture_keys(recipe) - known)


def _parents_first(recipes: list[Recipe]) -> list[Recipe]:
    """Recipes in file order, except that one whose stage starts from another recipe's stage
    (`recipe:<path>#<stage>`) comes after that recipe."""
    by_path = {Path(recipe.source_path): recipe for recipe in recipes}
    ordered: list[Recipe] = []

    def visit(recipe: Recipe) -> None:
        if recipe in ordered:
            return
        for stage in recipe.stages:
            parent = parent_of(recipe, stage)
            if parent.kind == "recipe" and parent.path.resolve() in by_path:
                visit(by_path[parent.path.resolve()])
        ordered.append(recipe)

    for recipe in recipes:
        visit(recipe)
    return ordered


# ---- training --------------------------------------------------------------------------------------------
def train_study(study: Study, home: Home, command: str, say: Say, stop_check: StopCheck = lambda: None) -> None:
    """Train (or reuse) every stage; a stage several arms share trains once and is linked into each."""
    from codemix.train.run import run_stage

    distinct = study.distinct
    total = sum(stage.tokens for stage in distinct)
    started: set[str] = set()
    tokens_before = 0
    for plan in study.plans:
        done = {}
        for stage in plan.stages:
            stop_check()
            if stage.identity not in started:
                started.add(stage.identity)
                say(f"\n[{len(started)}/{len(distinct)}] {label(stage)} [{stage.identity}]: {stage.tokens:,} tokens "
                    f"(study: {tokens_before:,} of {total:,} tokens before it)")
                tokens_before += stage.tokens
            done[stage.name] = run_stage(stage, done, home, command)


# ---- evaluation ------------------------------------------------------------------------------------------
def evaluate_study(study: Study, settings: Settings, home: Home, command: Sequence[str], say: Say,
                   stop_check: StopCheck = lambda: None, workers: int = 1) -> None:
    """Evaluate every distinct stage not yet scored with these settings, `workers` stages at a time."""
    from codemix.eval.results import resolve_target
    from codemix.eval.tasks.registry import resolve_tasks
    from codemix.runs.index import find_completed
    from codemix.study.eval_workers import Task, run_tasks

    task_names = sorted(task.name for task in resolve_tasks(SUITE, None))
    distinct = study.distinct
    pending = []
    for number, stage in enumerate(distinct, start=1):
        found = find_completed(stage.identity, home)
        if found is None:
            raise ConfigError(f"stage {label(stage)} [{stage.identity}] is not trained; run the same command again")
        target = resolve_target(found.path)
        prefix = f"[eval {number}/{len(distinct)}] {label(stage)}"
        if is_current(target.default_results, stage.identity, settings, task_names):
            say(f"{prefix}: reusing {target.default_results}")
        else:
            pending.append(Task(prefix, evaluate_stage, StageEvaluation(found.path, settings, tuple(command))))
    if pending:
        say(f"evaluating {len(pending)} stages: {len(task_names)} tasks x {settings.limit} examples "
            f"({settings.code_limit} for code)")
    with one_torch_thread():
        run_tasks(pending, workers, say, stop_check)


@dataclass(frozen=True)
class StageEvaluation:
    stage_dir: Path
    settings: Settings
    command: tuple[str, ...]


def evaluate_stage(job: StageEvaluation, progress: Callable[[str], None]) -> None:
    """One stage on the study's suite (in a worker process or this one)."""
    from codemix.eval.harness import evaluate
    from codemix.eval.results import resolve_target
    from codemix.eval.runner import EvalOptions
    from codemix.eval.tasks.registry import resolve_tasks

    evaluate(resolve_target(job.stage_dir), resolve_tasks(SUITE, None), EvalOptions(**job.settings.eval_options),
             list(job.command), heldout_samples=job.settings.heldout_samples, progress=progress)


def is_current(results_path: Path, identity: str, settings: Settings, task_names: list[str]) -> bool:
    """Whether `results_path` scored this stage identity, and the weights now on disk, with these limits on
    exactly these tasks."""
    from codemix.eval.results import scored_current_weights

    if not results_path.is_file():
        return False
    try:
        results = read_json(results_path)
        scored = sorted({*results["tasks"], *results["failed"]})
        options = results["options"]
        return (results["checkpoint"].get("identity") == identity and scored_current_weights(results["checkpoint"])
                and all(options.get(key) == value for key, value in settings.eval_options.items())
                and scored == task_names)
    except (ConfigError, KeyError, TypeError, AttributeError):
        return False  # unreadable or from another format: evaluate again


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Scoring and token-by-token generation of a small model are many small operations: a second
    intra-op thread only adds synchronisation, which costs 30x on a loaded 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ---- the whole run ---------------------------------------------------------------------------------------
@contextmanager
def ctrl_c_remembered() -> Iterator[StopCheck]:
    """Ctrl-C raises KeyboardInterrupt as usual, and is also remembered: Python prints and drops an
    interrupt that lands in a garbage-collection callback (which happens between stages), so the study
    checks the returned function before each stage and evaluation. Main thread only (signal handlers)."""
    pressed = threading.Event()

    def handler(signum: int, frame: object) -> None:
        pressed.set()
        raise KeyboardInterrupt

    def stop_check() -> None:
        if pressed.is_set():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop_check
    finally:
        signal.signal(signal.SIGINT, previous)


def reproduce(recipe_dir: str | os.PathLike, smoke: bool = False, home: Home = None, limit: int | None = None,
              out: str | os.PathLike | None = None, command: Sequence[str] = ("codemix", "reproduce"),
              say: Say = print, code_limit: int | None = None, synth_generator: str | None = None,
              seeds: int | None = None, judge: "JudgeSpec | None" = None,
              eval_workers: int | None = None) -> "Report | None":
    """Plan, train, evaluate (and judge) and report the study of `recipe_dir`; returns the report (None
    on the non-zero ranks of a multi-process training job, which only take part in training).
    `eval_workers`: stages evaluated at once, each in its own process (default: one per core)."""
    from lightning.pytorch.utilities import rank_zero_only

    from codemix.analysis.report import build_report
    from codemix.study.eval_workers import default_workers

    settings = Settings.for_run(smoke, limit, code_limit)
    check_seeds_option(seeds)
    if eval_workers is not None and eval_workers < 1:
        raise ConfigError(f"--eval-workers must be at least 1, not {eval_workers}")
    eval_workers = default_workers() if eval_workers is None else eval_workers
    directory = study_dir(recipe_dir, smoke)
    name = Path(recipe_dir).resolve().name + ("-smoke" if smoke else "")
    command_line = " ".join(command)
    load_before = os.getloadavg()
    clock = time.monotonic()
    if synth_generator is not None:
        add_synthetic_source(directory, synth_generator, home, command_line, say)
    study = plan_study(directory, home, command_line, say, seeds)
    runs = sorted(set(study.runs_per_recipe.values()))
    say(f"study {name}: {len(study.recipe_files)} recipes"
        + (f" x {'/'.join(map(str, runs))} seeds" if runs != [1] else "")
        + f", {len(study.stages)} arm stages, {len(study.distinct)} "
        f"distinct stages, {sum(s.tokens for s in study.distinct):,} tokens to train"
        + (f"; {len(study.skipped)} recipes skipped" if study.skipped else ""))
    planned = time.monotonic()
    with ctrl_c_remembered() as stop_check:
        train_study(study, home, command_line, say, stop_check)
        if rank_zero_only.rank != 0:
            return None
        trained = time.monotonic()
        evaluate_study(study, settings, home, command, say, stop_check, eval_workers)
        stop_check()
    evaluated = time.monotonic()
    out = Path(out) if out is not None else reports_dir(home) / name
    run_dirs = [stage.run_dir.path for stage in study.stages]
    report = build_report(run_dirs, out)
    reported = time.monotonic()
    if judge is not None:
        report = judge_and_report(report, run_dirs, judge, settings, command, say)
    finished = time.monotonic()
    write_json_atomic(out / REPRODUCE_FILE, {
        "command": list(command),
        "recipe_dir": str(directory),
        "recipes": study.recipe_files,
        "seeds": study.runs_per_recipe,  # recipe file -> runs (one per seed)
        "skipped": study.skipped,
        "stages": len(study.stages),
        "distinct_stages": len(study.distinct),
        "tokens": sum(s.tokens for s in study.distinct),
        "eval": {"suite": SUITE, **settings.eval_options, "heldout_samples": settings.heldout_samples,
                 "workers": eval_workers},
        # This run's times: reused stages and evaluations cost almost nothing.
        "wall_s": {"plan": round(planned - clock, 1), "train": round(trained - planned, 1),
                   "eval": round(evaluated - trained, 1), "report": round(reported - evaluated, 1),
                   "judge": round(finished - reported, 1),  # with the report written again
                   "total": round(finished - clock, 1)},
        "load_average": {"start": load_before, "end": os.getloadavg()},
        "cpu_count": os.cpu_count(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    return report


def judge_and_report(report: "Report", run_dirs: list[Path], judge: "JudgeSpec", settings: Settings,
                     command: Sequence[str], say: Say) -> "Report":
    """Judge the study's win-rate pairs (read off the report's rows) at `settings.limit` prompts, and
    write the report again with them."""
    from codemix.analysis.report import build_report
    from codemix.study.judging import judge_study, judged_pairs

    pairs = judged_pairs(report.rows, report.comparisons)
    with one_torch_thread():
        files = judge_study(pairs, judge, None, settings.limit, report.out, command, say)
    return build_report(run_dirs, report.out, winrate_paths=files) if files else report
