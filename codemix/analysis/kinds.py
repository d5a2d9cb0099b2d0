"""How source kinds count in the study's "text" and "code" token columns (PAPER.md, Table 2).

The study counts markup-style code as code (its code -> text arm's "200B code" is 80% web code and 20%
markup), and its cooldown's high-quality text as text. Kinds the study never used (a user's own) fall
in neither column."""

from typing import Mapping

TEXT_KINDS = ("text", "hq")
CODE_KINDS = ("code", "markup", "code_adjacent", "synthetic")


def text_and_code(tokens_by_kind: Mapping[str, float]) -> tuple[float, float]:
    """(text tokens, code tokens) from tokens per source kind."""
    text = sum(tokens for kind, tokens in tokens_by_kind.items() if kind in TEXT_KINDS)
    code = sum(tokens for kind, tokens in tokens_by_kind.items() if kind in CODE_KINDS)
    return text, code
