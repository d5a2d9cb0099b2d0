"""What a built corpus holds, per source: kind, documents, tokens, share of tokens, what cleaning
removed, licence. `corpus_rows` for code and reports, `format_corpus` for people."""

from codemix.data.corpus import Corpus

COLUMNS = ("source", "kind", "documents", "tokens", "share", "filters", "licence")
RIGHT_ALIGNED = {"documents", "tokens", "share"}


def corpus_rows(corpus: Corpus) -> list[dict]:
    """One row per source in source_id order; `share` is the source's fraction of all tokens."""
    manifests = [corpus.manifest(source.name) for source in corpus.sources]
    total = sum(m["tokens"] for m in manifests) or 1
    return [
        {
            "source": source.name,
            "kind": source.kind,
            "documents": m["documents"],
            "tokens": m["tokens"],
            "share": m["tokens"] / total,
            "filters": {name: n for name, n in m["filters"].items() if n},
            "licence": source.licence,
        }
        for source, m in zip(corpus.sources, manifests)
    ]


def format_corpus(corpus: Corpus) -> str:
    """A header line and a plain aligned table (no colours, so it pastes anywhere)."""
    rows = corpus_rows(corpus)
    cells = [list(COLUMNS)] + [[_cell(column, row[column]) for column in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(text.rjust(w) if column in RIGHT_ALIGNED else text.ljust(w) for text, w, column in zip(line, widths, COLUMNS)).rstrip()
        for line in cells
    ]
    header = (
        f"corpus {corpus.name} at {corpus.path}: {sum(r['tokens'] for r in rows):,} tokens, "
        f"seq_len {corpus.seq_len}, vocab {corpus.vocab_size}, tokenizer {corpus.tokenizer_hash}"
    )
    return "\n".join([header, *lines])


def _cell(column: str, value) -> str:
    if column == "share":
        return f"{100 * value:.1f}%"
    if column in ("documents", "tokens"):
        return f"{value:,}"
    if column == "filters":
        return " ".join(f"{name}={n}" for name, n in value.items()) or "-"
    return str(value)
