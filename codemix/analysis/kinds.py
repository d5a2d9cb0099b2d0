"""How source kinds count in the study's "text" and "code" token columns (PAPER.md, Table 2).

The kinds and their columns are the data spec's (codemix.config.data_spec): markup-style code counts
as code, the cooldown's high-quality text, math and instruction-style data as text. Kinds the study
never used (a user's own) fall in neither column."""

from typing import Mapping

from codemix.config.data_spec import STUDY_CODE_KINDS as CODE_KINDS
from codemix.config.data_spec import STUDY_TEXT_KINDS as TEXT_KINDS


def text_and_code(tokens_by_kind: Mapping[str, float]) -> tuple[float, float]:
    """(text tokens, code tokens) from tokens per source kind."""
    text = sum(tokens for kind, tokens in tokens_by_kind.items() if kind in TEXT_KINDS)
    code = sum(tokens for kind, tokens in tokens_by_kind.items() if kind in CODE_KINDS)
    return text, code
