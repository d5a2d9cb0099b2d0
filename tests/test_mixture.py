"""Stage mixture planning against a real corpus on disk: shares, exact budgets, and every refusal."""

import math

import pytest
from mixture_fixtures import SEQ_LEN, SourceSpec, write_corpus

from codemix.data.corpus import Corpus
from codemix.data.mixture import largest_remainder, plan_data, render_share_table, resolve_shares, share_table
from codemix.errors import ConfigError

ORIGIN = "recipes/test.yaml stage 'cpt'"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("mixture") / "corpus"
    write_corpus(
        root,
        [
            SourceSpec("py", "code", 100),
            SourceSpec("go", "code", 60),
            SourceSpec("kjv", "text", 200),
            SourceSpec("docs", "markup", 50),
        ],
    )
    return Corpus.open(root)


def plan(corpus, mixture, tokens=SEQ_LEN * 16 * 10, global_batch=16, **kwargs):
    return plan_data(corpus, mixture, tokens, SEQ_LEN, global_batch, origin=ORIGIN, **kwargs)


def test_source_weights_are_normalised(corpus):
    shares = resolve_shares(corpus, {"py": 3, "kjv": 1, "docs": 0}, ORIGIN)
    assert shares == {"py": 0.75, "go": 0.0, "kjv": 0.25, "docs": 0.0}


def test_kind_weight_spreads_over_its_sources_by_train_tokens(corpus):
    shares = resolve_shares(corpus, {"code": 0.5, "text": 0.3, "markup": 0.2}, ORIGIN)
    assert shares["py"] == pytest.approx(0.5 * 100 / 160)
    assert shares["go"] == pytest.approx(0.5 * 60 / 160)
    assert shares["kjv"] == pytest.approx(0.3)
    assert shares["docs"] == pytest.approx(0.2)


def test_largest_remainder_sums_exactly():
    assert largest_remainder([1 / 3] * 3, 10) == [4, 3, 3]
    assert largest_remainder([0.1] * 10, 7) == [1] * 7 + [0] * 3
    assert sum(largest_remainder([0.2, 0.7, 0.1], 1001)) == 1001


def test_plan_draws_the_budget_exactly_by_share(corpus):
    stage = plan(corpus, {"code": 0.5, "text": 0.3, "markup": 0.2})
    assert stage.total_samples == 160 and stage.tokens == 160 * SEQ_LEN and stage.steps == 10
    assert [p.samples for p in stage.sources] == [50, 30, 48, 32]
    for p in stage.sources:
        assert abs(p.samples - p.share * stage.total_samples) < 1


@pytest.mark.parametrize(
    "mixture, expected",
    [
        ({"pyhton": 1.0}, ["'pyhton'", "neither a source nor a kind", "sources: ['docs', 'go', 'kjv', 'py']"]),
        ({"py": -0.5, "kjv": 1.0}, ["'py'", "-0.5", ">= 0"]),
        ({"py": float("nan")}, ["'py'", "nan"]),
        ({"py": "lots"}, ["'py'", "'lots'", "must be a number"]),
        ({"py": 0.0, "kjv": 0}, ["sum to zero"]),
        ({}, ["mixture is empty"]),
        ({"py": 1.0, "text": 1.0}, ["mixes source names ['py']", "kind names ['text']"]),
    ],
)
def test_bad_mixture_is_refused_naming_value_and_origin(corpus, mixture, expected):
    with pytest.raises(ConfigError) as err:
        plan(corpus, mixture)
    message = str(err.value)
    assert ORIGIN in message and str(corpus.path) in message
    for fragment in expected:
        assert fragment in message


def test_name_that_is_both_source_and_kind_is_refused_when_ambiguous(tmp_path):
    corpus = Corpus.open(
        write_corpus(
            tmp_path / "c",
            [SourceSpec("code", "code", 10), SourceSpec("rust", "code", 10), SourceSpec("bible", "text", 10)],
        )
    )
    with pytest.raises(ConfigError, match="both source and kind names"):
        resolve_shares(corpus, {"code": 1.0}, ORIGIN)
    assert resolve_shares(corpus, {"code": 1.0, "text": 1.0}, ORIGIN) == {"code": 0.25, "rust": 0.25, "bible": 0.5}


def test_seq_len_and_tokenizer_must_match_the_corpus(corpus):
    with pytest.raises(ConfigError, match=f"stage seq_len 16 differs from the corpus seq_len {SEQ_LEN}"):
        plan_data(corpus, {"kjv": 1}, 16 * 16, 16, 1, origin=ORIGIN)
    with pytest.raises(ConfigError) as err:
        plan(corpus, {"kjv": 1}, tokenizer_hash="0123456789abcdef")
    message = str(err.value)
    assert "0123456789abcdef" in message and corpus.tokenizer_hash in message and str(corpus.path) in message
    assert plan(corpus, {"kjv": 1}, tokenizer_hash=corpus.tokenizer_hash).tokens == 160 * SEQ_LEN


def test_too_small_source_says_passes_needed_unless_allowed(corpus):
    # docs has 50 train samples; 0.5 of 160 samples = 80 draws = 1.6 passes.
    mixture = {"docs": 0.5, "kjv": 0.5}
    with pytest.raises(ConfigError) as err:
        plan(corpus, mixture)
    message = str(err.value)
    assert "'docs'" in message and "1.60 passes" in message and "max_passes >= 1.60" in message and ORIGIN in message
    stage = plan(corpus, mixture, max_passes=1.6)
    assert stage.sources[3].samples == 80 and math.isclose(stage.sources[3].passes, 1.6)


def test_share_table_reports_target_vs_observed(corpus):
    stage = plan(corpus, {"py": 1, "kjv": 1})
    rows = share_table(stage, [SEQ_LEN * 70, 0, SEQ_LEN * 90, 0])
    by_source = {row.source: row for row in rows}
    assert by_source["py"].target_share == 0.5 and by_source["py"].planned_tokens == 80 * SEQ_LEN
    assert by_source["py"].observed_share == pytest.approx(70 / 160)
    text = render_share_table(rows)
    header = ["source", "kind", "target", "planned", "tokens", "observed", "tokens", "observed", "ratio"]
    assert text.splitlines()[0].split() == header
    assert "py      code    0.5000" in text and "0.875" in text and text.splitlines()[-1].startswith("total")
