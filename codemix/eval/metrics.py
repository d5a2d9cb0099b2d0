"""Per-example metrics: answer normalisation for exact match, and the unbiased pass@k estimator."""

import re
import string

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD/TriviaQA normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: tuple[str, ...] | list[str]) -> bool:
    predicted = normalize_answer(prediction)
    return any(predicted == normalize_answer(answer) for answer in answers)


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Chen et al. (2021): 1 - C(n-c, k) / C(n, k), as a numerically stable product."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - correct < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - correct + 1, n + 1)))
