"""A stage's data mixture resolved against a corpus: how many samples each source contributes.

A mixture maps source names (or kind names) to weights. A kind's weight is spread over that kind's
sources in proportion to their train tokens. The plan turns a token budget into whole samples per
source (largest remainder, so they sum to the budget exactly) and refuses, before any compute is
spent, a mixture the corpus cannot serve or a source too small for its share. The budget's arithmetic
(a whole number of global batches) is the recipe's, checked once when it is loaded.
"""

import hashlib
import json
import math
from fractions import Fraction
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from codemix.data.corpus import Corpus, SourceInfo
from codemix.errors import ConfigError


@dataclass(frozen=True)
class SourcePlan:
    """One source's part of a stage: its target share and the samples it contributes."""

    source: SourceInfo
    share: float  # normalised target share of the stage's tokens
    train_samples: int  # samples in the source's train split
    samples: int  # samples the stage draws from it
    seq_len: int

    @property
    def tokens(self) -> int:
        return self.samples * self.seq_len

    @property
    def passes(self) -> float:
        return self.samples / self.train_samples if self.train_samples else math.inf


@dataclass(frozen=True)
class DataPlan:
    """What a stage streams: samples per source of one corpus."""

    corpus: Corpus
    seq_len: int
    global_batch: int
    sources: tuple[SourcePlan, ...]  # every corpus source, index == source_id

    @property
    def total_samples(self) -> int:
        return sum(p.samples for p in self.sources)

    @property
    def tokens(self) -> int:
        return self.total_samples * self.seq_len

    @property
    def steps(self) -> int:
        return self.total_samples // self.global_batch

    @property
    def drawn(self) -> list[SourcePlan]:
        """The sources the stage actually draws from (planned samples > 0)."""
        return [p for p in self.sources if p.samples > 0]

    def fingerprint(self) -> str:
        """Identifies what the stage streams; a loader state saved under another plan is refused."""
        payload = {
            "tokenizer_hash": self.corpus.tokenizer_hash,
            "seq_len": self.seq_len,
            "global_batch": self.global_batch,
            "samples": {p.source.name: p.samples for p in self.sources},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _where(origin: str, corpus: Corpus) -> str:
    return f"{origin} (corpus {corpus.path})"


def _train_split(corpus: Corpus, source: SourceInfo) -> dict:
    manifest = corpus.manifest(source.name)
    try:
        train = manifest["splits"]["train"]
        return {"samples": int(train["samples"]), "tokens": int(train["tokens"])}
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(
            f"{corpus.path / source.name / 'manifest.json'}: no splits.train samples/tokens ({err})"
        ) from err


def _checked_weight(key: str, value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: mixture weight for '{key}' must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: mixture weight for '{key}' must be finite and >= 0, got {value!r}")
    return float(value)


def _weights_by_source(corpus: Corpus, weights: Mapping[str, float], by_kind: bool) -> dict[str, float]:
    if not by_kind:
        return {s.name: weights.get(s.name, 0.0) for s in corpus.sources}
    result = {s.name: 0.0 for s in corpus.sources}
    for kind, weight in weights.items():
        members = [s for s in corpus.sources if s.kind == kind]
        tokens = {s.name: _train_split(corpus, s)["tokens"] for s in members}
        total = sum(tokens.values())
        if weight > 0 and total == 0:
            raise ConfigError(f"{corpus.path}: kind '{kind}' has weight {weight} but its sources hold no train tokens")
        for name, count in tokens.items():
            result[name] += weight * count / total if total else 0.0
    return result


def resolve_shares(corpus: Corpus, mixture: Mapping[str, float], origin: str = "stage") -> dict[str, float]:
    """Target share of every corpus source (summing to 1) for a mixture over source OR kind names."""
    where = _where(origin, corpus)
    if not mixture:
        raise ConfigError(f"{where}: the mixture is empty")
    weights = {str(key): _checked_weight(str(key), value, where) for key, value in mixture.items()}
    source_names = {s.name for s in corpus.sources}
    kinds = {s.kind for s in corpus.sources}
    unknown = [key for key in weights if key not in source_names and key not in kinds]
    if unknown:
        raise ConfigError(
            f"{where}: mixture key(s) {unknown} name neither a source nor a kind of the corpus "
            f"(sources: {sorted(source_names)}; kinds: {sorted(kinds)})"
        )
    as_sources = all(key in source_names for key in weights)
    as_kinds = all(key in kinds for key in weights)
    if not (as_sources or as_kinds):
        raise ConfigError(
            f"{where}: mixture mixes source names {sorted(k for k in weights if k not in kinds)} with kind names "
            f"{sorted(k for k in weights if k not in source_names)}; use only sources or only kinds"
        )
    if sum(weights.values()) <= 0:
        raise ConfigError(f"{where}: mixture weights {weights} sum to zero; at least one must be positive")
    by_source = _weights_by_source(corpus, weights, by_kind=not as_sources)
    if as_sources and as_kinds and by_source != _weights_by_source(corpus, weights, by_kind=True):
        raise ConfigError(
            f"{where}: mixture keys {sorted(weights)} are both source and kind names and mean different "
            "mixtures; rename the sources so they differ from their kinds"
        )
    total = sum(by_source.values())
    return {name: weight / total for name, weight in by_source.items()}


def largest_remainder(shares: Sequence[float], total: int) -> list[int]:
    """Whole counts proportional to `shares` that sum to `total` exactly (Hamilton's method)."""
    exact = [Fraction(share) for share in shares]  # exact arithmetic: float rounding never over-assigns
    quotas = [share * total / sum(exact) for share in exact]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _check_corpus_match(corpus: Corpus, seq_len: int, tokenizer_hash: str | None, where: str) -> None:
    if seq_len != corpus.seq_len:
        raise ConfigError(f"{where}: stage seq_len {seq_len} differs from the corpus seq_len {corpus.seq_len}")
    if tokenizer_hash is not None and tokenizer_hash != corpus.tokenizer_hash:
        raise ConfigError(
            f"{where}: the stage expects tokenizer {tokenizer_hash} but the corpus at {corpus.path} was "
            f"built with tokenizer {corpus.tokenizer_hash}"
        )


def plan_data(
    corpus: Corpus,
    mixture: Mapping[str, float],
    tokens: int,
    seq_len: int,
    global_batch: int,
    max_passes: float = 1.0,
    tokenizer_hash: str | None = None,
    origin: str = "stage",
) -> DataPlan:
    """Samples per source for a stage whose budget is a whole number of global batches (a loaded
    recipe's always is), or a ConfigError saying what to change."""
    where = _where(origin, corpus)
    _check_corpus_match(corpus, seq_len, tokenizer_hash, where)
    total = tokens // seq_len
    shares = resolve_shares(corpus, mixture, origin)
    counts = largest_remainder([shares[s.name] for s in corpus.sources], total)
    plans = tuple(
        SourcePlan(
            source=s, share=shares[s.name], train_samples=_train_split(corpus, s)["samples"], samples=n, seq_len=seq_len
        )
        for s, n in zip(corpus.sources, counts)
    )
    for plan in plans:
        if plan.samples and plan.passes > max_passes:
            needed = -(-plan.samples * 100 // plan.train_samples) / 100  # passes rounded up to 0.01
            raise ConfigError(
                f"{where}: source '{plan.source.name}' is too small for its share: the stage draws {plan.samples} "
                f"samples from its {plan.train_samples} train samples, {plan.passes:.2f} passes over it, "
                f"above max_passes {max_passes}; allow max_passes >= {needed:.2f} "
                "or lower its weight or the stage's tokens"
            )
    return DataPlan(corpus=corpus, seq_len=seq_len, global_batch=global_batch, sources=plans)


@dataclass(frozen=True)
class ShareRow:
    source: str
    kind: str
    target_share: float
    planned_tokens: int
    observed_tokens: int
    observed_share: float


def share_table(plan: DataPlan, observed_tokens: Sequence[int]) -> list[ShareRow]:
    """Target vs observed share per source (observed indexed by source_id)."""
    observed_total = sum(observed_tokens)
    return [
        ShareRow(
            source=p.source.name,
            kind=p.source.kind,
            target_share=p.share,
            planned_tokens=p.tokens,
            observed_tokens=int(observed_tokens[p.source.id]),
            observed_share=observed_tokens[p.source.id] / observed_total if observed_total else 0.0,
        )
        for p in plan.sources
    ]


def render_share_table(rows: Sequence[ShareRow]) -> str:
    """A fixed-width text table, one line per source and a total line."""
    header = ("source", "kind", "target", "planned tokens", "observed tokens", "observed", "ratio")
    lines = [header]
    for r in rows:
        ratio = f"{r.observed_share / r.target_share:.3f}" if r.target_share else "-"
        cells = (f"{r.target_share:.4f}", f"{r.planned_tokens:,}", f"{r.observed_tokens:,}", f"{r.observed_share:.4f}")
        lines.append((r.source, r.kind, *cells, ratio))
    planned = sum(r.planned_tokens for r in rows)
    observed = sum(r.observed_tokens for r in rows)
    lines.append(("total", "", "1.0000", f"{planned:,}", f"{observed:,}", "1.0000" if observed else "0.0000", ""))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    )
