"""Tests of greedy search, beam search and sampling on toy step functions."""

import itertools

import numpy as np
import pytest
from keras import ops

from keras_attention import decoding
from keras_attention.models.generation import DecodingOptions
from tests.testing import compiled

PAD, START, END = 0, 1, 2

# A transition table where greedy is suboptimal: from START greedy takes
# "a" (0.5) but every continuation of "a" is unlikely (<= 0.3), while
# "b" (0.4) ends with 0.9: P(b END) = 0.36 > P(a x) <= 0.15.
A, B, C, D = 4, 5, 6, 3
TABLE = np.full((7, 7), 1e-6)
TABLE[START, [A, B, END]] = [0.5, 0.4, 0.1]
TABLE[A, [A, B, C, END]] = [0.3, 0.25, 0.25, 0.2]
TABLE[B, [END, C]] = [0.9, 0.1]
TABLE[C, [END, C]] = [0.6, 0.4]
TABLE[D, D] = 1.0
TABLE[END, END] = 1.0
TABLE[PAD, PAD] = 1.0
TABLE = TABLE / TABLE.sum(-1, keepdims=True)


def table_step(tokens, state, index):
    """Logits = log P(next | previous token); the state counts steps."""
    logits = ops.take(
        ops.log(ops.convert_to_tensor(TABLE, "float32")), tokens, 0
    )
    return logits, state + 1


def log_prob(sequence):
    previous, total = START, 0.0
    for token in sequence:
        total += np.log(TABLE[previous, token])
        previous = token
        if token == END:
            break
    return total


def brute_force(max_length, alpha):
    """Best sequence and GNMT score over every sequence of max_length."""
    best, best_score = None, -np.inf
    for sequence in itertools.product(range(7), repeat=max_length):
        if END in sequence:  # canonical form: pads after the end
            end = sequence.index(END)
            if any(t != PAD for t in sequence[end + 1 :]):
                continue
            length = end + 1
        else:
            if PAD in sequence:
                continue
            length = max_length
        score = log_prob(sequence) / ((5 + length) / 6) ** alpha
        if score > best_score:
            best, best_score = list(sequence), score
    return best, best_score


def run_beam(**kwargs):
    tokens, scores = decoding.beam_search(
        table_step,
        np.zeros((2,), "int32"),
        np.array([START, START]),
        3,
        end_id=END,
        **kwargs,
    )
    return np.asarray(tokens), np.asarray(scores)


def test_greedy_takes_the_locally_best_token():
    tokens = decoding.greedy_search(
        table_step, np.zeros((1,), "int32"), np.array([START]), 3, end_id=END
    )
    # START -> a (0.5) -> a (0.3) -> a (0.3): P = 0.045.
    np.testing.assert_array_equal(np.asarray(tokens), [[A, A, A]])


def test_greedy_pads_after_the_end_token_and_stops_early():
    def step_fn(tokens, state, index):  # predicts token + 1
        return ops.one_hot(tokens + 1, 8), state + 1

    tokens = decoding.greedy_search(
        step_fn, np.zeros((2,), "int32"), np.array([1, 4]), 6, end_id=5
    )
    np.testing.assert_array_equal(
        np.asarray(tokens), [[2, 3, 4, 5, 0, 0], [5, 0, 0, 0, 0, 0]]
    )


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_beam_search_finds_the_brute_force_optimum(alpha):
    tokens, scores = run_beam(beam_width=4, length_penalty=alpha)
    best, best_score = brute_force(3, alpha)
    np.testing.assert_array_equal(tokens, [best, best])
    np.testing.assert_allclose(scores, [best_score] * 2, rtol=1e-5)
    assert best == [B, END, PAD]  # beam beats greedy's [a, a, a]


def test_beam_scores_are_length_normalised_log_probs():
    tokens, scores = decoding.beam_search(
        table_step,
        np.zeros((1,), "int32"),
        np.array([START]),
        3,
        end_id=END,
        beam_width=3,
        length_penalty=0.6,
        return_all_beams=True,
    )
    tokens, scores = np.asarray(tokens)[0], np.asarray(scores)[0]
    assert tokens.shape == (3, 3)
    for sequence, score in zip(tokens, scores):
        length = list(sequence).index(END) + 1 if END in sequence else 3
        expected = log_prob(sequence) / ((5 + length) / 6) ** 0.6
        np.testing.assert_allclose(score, expected, rtol=1e-5)
    assert np.all(np.diff(scores) <= 0)  # best first


def random_step(vocab=9, seed=0):
    """A step function with a batch-dependent state (checks beam tiling)."""
    weights = np.random.default_rng(seed).normal(size=(vocab, vocab)) * 3

    def step_fn(tokens, state, index):
        logits = ops.take(ops.convert_to_tensor(weights, "float32"), tokens, 0)
        logits = logits + state["bias"]
        return logits, {"bias": state["bias"] * 0.5}

    return step_fn


def test_beam_width_one_equals_greedy():
    step_fn = random_step()
    state = {"bias": np.random.default_rng(1).normal(size=(5, 9)) * 3}
    state["bias"] = state["bias"].astype("float32")
    start = np.array([1, 3, 4, 5, 6])
    greedy = decoding.greedy_search(step_fn, state, start, 7, end_id=2)
    beam, _ = decoding.beam_search(
        step_fn, state, start, 7, end_id=2, beam_width=1
    )
    np.testing.assert_array_equal(np.asarray(beam), np.asarray(greedy))


def test_sample_with_top_k_one_equals_greedy():
    step_fn = random_step()
    state = {"bias": np.zeros((4, 9), "float32")}
    start = np.array([1, 3, 4, 5])
    greedy = decoding.greedy_search(step_fn, state, start, 6, end_id=2)
    sampled = decoding.sample(
        step_fn, state, start, 6, end_id=2, top_k=1, temperature=2.0, seed=3
    )
    np.testing.assert_array_equal(np.asarray(sampled), np.asarray(greedy))


def one_step_sample(probs, rows=4000, **kwargs):
    logits = np.log(np.tile(np.asarray(probs, "float32"), (rows, 1)))

    def step_fn(tokens, state, index):
        return ops.convert_to_tensor(logits), state

    tokens = decoding.sample(step_fn, (), np.ones(rows, "int32"), 1, **kwargs)
    counts = np.bincount(np.asarray(tokens)[:, 0], minlength=len(probs))
    return counts / rows


def test_sample_frequencies_follow_the_softmax():
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(one_step_sample(probs, seed=0), probs, atol=0.03)
    # Temperature T: p ** (1 / T), renormalised.
    sharp = probs**2 / np.sum(probs**2)
    np.testing.assert_allclose(
        one_step_sample(probs, seed=1, temperature=0.5), sharp, atol=0.03
    )


def test_sample_top_k_and_top_p_keep_only_the_likely_tokens():
    probs = np.array([0.05, 0.5, 0.15, 0.3])
    top2 = one_step_sample(probs, seed=0, top_k=2)
    np.testing.assert_allclose(top2, [0, 0.5 / 0.8, 0, 0.3 / 0.8], atol=0.03)
    # Nucleus 0.7: 0.5 then 0.3 reach it; 0.15 and 0.05 are cut.
    nucleus = one_step_sample(probs, seed=0, top_p=0.7)
    np.testing.assert_allclose(nucleus, [0, 0.5 / 0.8, 0, 0.3 / 0.8], atol=0.03)


def test_sample_is_reproducible_with_a_seed():
    step_fn = random_step()
    state = {"bias": np.zeros((8, 9), "float32")}
    start = np.ones(8, "int32")
    first = decoding.sample(step_fn, state, start, 10, seed=7)
    second = decoding.sample(step_fn, state, start, 10, seed=7)
    other = decoding.sample(step_fn, state, start, 10, seed=8)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_coverage_penalty_is_added_to_finished_beams():
    source = 3

    def step_fn(tokens, state, index):  # attends to position token % S
        logits, state = table_step(tokens, state, index)
        return logits, state, ops.one_hot(tokens % source, source)

    tokens, scores = decoding.beam_search(
        step_fn,
        np.zeros((1,), "int32"),
        np.array([START]),
        3,
        end_id=END,
        beam_width=3,
        coverage_penalty=0.2,
        return_all_beams=True,
    )
    for sequence, score in zip(np.asarray(tokens)[0], np.asarray(scores)[0]):
        if END not in sequence:
            continue
        length = list(sequence).index(END) + 1
        inputs = [START] + list(sequence[: length - 1])
        coverage = np.bincount(np.array(inputs) % source, minlength=source)
        covered = coverage[coverage > 0]
        penalty = 0.2 * np.sum(np.log(np.minimum(covered, 1.0)))
        expected = log_prob(sequence) / ((5 + length) / 6) ** 0.6 + penalty
        np.testing.assert_allclose(score, expected, rtol=1e-5)


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_decoding_compiles_with_xla(method):
    step_fn = random_step()
    state = {"bias": np.random.default_rng(2).normal(size=(3, 9))}
    state["bias"] = state["bias"].astype("float32")
    start = np.array([1, 4, 6], "int32")

    def decode(state, start):
        if method == "greedy":
            return decoding.greedy_search(step_fn, state, start, 6, end_id=2)
        if method == "beam":
            return decoding.beam_search(
                step_fn, state, start, 6, end_id=2, beam_width=3
            )[0]
        return decoding.sample(step_fn, state, start, 6, end_id=2, seed=5)

    np.testing.assert_array_equal(
        np.asarray(compiled(decode)(state, start)),
        np.asarray(decode(state, start)),
    )


def test_bad_arguments_raise_value_errors():
    state, start = np.zeros((1,), "int32"), np.array([START])
    with pytest.raises(ValueError, match="beam_width"):
        decoding.beam_search(table_step, state, start, 3, beam_width=0)
    with pytest.raises(ValueError, match="top_p"):
        decoding.sample(table_step, state, start, 3, top_p=1.5)
    with pytest.raises(ValueError, match="coverage_penalty"):
        decoding.beam_search(table_step, state, start, 3, coverage_penalty=1.0)
    with pytest.raises(ValueError, match="max_length"):
        decoding.greedy_search(table_step, state, start, 0)


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 0.0},
        {"temperature": float("inf")},
        {"top_k": 1.5},
        {"top_k": 0},
        {"top_p": 1.5},
        {"top_p": 0.0},
    ],
    ids=str,
)
def test_sample_and_generate_check_the_sampling_options_alike(options):
    state, start = np.zeros((1,), "int32"), np.array([START])
    with pytest.raises(ValueError, match="argument") as direct:
        decoding.sample(table_step, state, start, 3, seed=0, **options)
    with pytest.raises(ValueError, match="argument") as generate:
        DecodingOptions(method="sample", **options)
    assert str(direct.value) == str(generate.value)


@pytest.mark.parametrize(
    "options", [{"top_k": 0}, {"top_k": 8}, {"top_p": 1.5}], ids=str
)
def test_filter_logits_checks_its_options(options):
    logits = np.zeros((2, 7), "float32")
    with pytest.raises(ValueError, match=f"argument `{next(iter(options))}`"):
        decoding.filter_logits(logits, **options)


@pytest.mark.parametrize(
    "options",
    [
        {"beam_width": 0},
        {"length_penalty": -1.0},
        {"coverage_penalty": float("nan")},
    ],
    ids=str,
)
def test_beam_search_and_generate_check_the_beam_options_alike(options):
    state, start = np.zeros((1,), "int32"), np.array([START])
    with pytest.raises(ValueError, match="argument") as direct:
        decoding.beam_search(table_step, state, start, 3, **options)
    with pytest.raises(ValueError, match="argument") as generate:
        DecodingOptions(method="beam", **options)
    assert str(direct.value) == str(generate.value)


@pytest.mark.parametrize("seed", [1.5, "3", 2**31])
def test_sample_rejects_a_seed_that_is_not_an_int32(seed):
    state, start = np.zeros((1,), "int32"), np.array([START])
    with pytest.raises(ValueError, match="argument `seed`"):
        decoding.sample(table_step, state, start, 3, seed=seed)
