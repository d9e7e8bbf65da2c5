"""Tests of greedy search, beam search and sampling on toy step functions."""

import itertools

import numpy as np
import pytest
from keras import ops

from keras_attention import decoding
from keras_attention import utils
from keras_attention.constants import mask_value
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


def random_weights(vocab=9, seed=0):
    return np.random.default_rng(seed).normal(size=(vocab, vocab)) * 3


def random_step(vocab=9, seed=0):
    """A step function with a batch-dependent state (checks beam tiling)."""
    weights = random_weights(vocab, seed)

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


# Hugging Face's logit controls (`decoding.Controls`): a NumPy reference
# written from their definitions, then every decoder against it.

MASK = mask_value()
DECODERS = {
    "greedy": decoding.greedy_search,
    "beam": decoding.beam_search,
    "sample": decoding.sample,
}
CONTROLS = [
    {"min_length": 4},
    {"no_repeat_ngram_size": 1},
    {"no_repeat_ngram_size": 2},
    {"no_repeat_ngram_size": 3},
    {"repetition_penalty": 1.8},
    {"repetition_penalty": 0.6},
    {"bad_token_ids": [3, 5]},
    {
        "min_length": 3,
        "no_repeat_ngram_size": 2,
        "repetition_penalty": 1.3,
        "bad_token_ids": [6],
    },
]


def numpy_controls(logits, history, end=END, **controls):
    """The controlled logits of one row after `history`, HF's way."""
    logits = np.array(logits, "float32")
    theta = controls.get("repetition_penalty", 1.0)
    for token in set(history):  # once per token, however often
        value = logits[token]
        logits[token] = value / theta if value > 0 else value * theta
    if len(history) < controls.get("min_length", 0):
        logits[end] = MASK
    size, t = controls.get("no_repeat_ngram_size", 0), len(history)
    for j in range(t - size + 1 if size else 0):  # every complete n-gram
        if list(history[j : j + size - 1]) == list(history[t - size + 1 :]):
            logits[history[j + size - 1]] = MASK
    logits[list(controls.get("bad_token_ids") or [])] = MASK
    return logits


def numpy_greedy(start, bias, max_length, end=END, **controls):
    """`random_step`'s greedy search, one row at a time, in NumPy."""
    weights = random_weights().astype("float32")
    rows = np.zeros((len(start), max_length), "int32")
    for row, (previous, row_bias) in enumerate(zip(start, bias)):
        history = []
        for index in range(max_length):
            logits = weights[previous] + row_bias * np.float32(0.5**index)
            logits = numpy_controls(logits, history, end, **controls)
            previous = int(np.argmax(logits))
            history.append(previous)
            if previous == end:
                break
        rows[row, : len(history)] = history
    return rows


def controlled_inputs():
    bias = np.random.default_rng(1).normal(size=(6, 9)).astype("float32")
    return {"bias": bias * 3}, np.array([1, 3, 4, 5, 6, 7])


@pytest.mark.parametrize("controls", CONTROLS, ids=str)
def test_greedy_with_controls_equals_numpy(controls):
    state, start = controlled_inputs()
    tokens = decoding.greedy_search(
        random_step(), state, start, 8, end_id=END, **controls
    )
    expected = numpy_greedy(start, state["bias"], 8, **controls)
    np.testing.assert_array_equal(np.asarray(tokens), expected)
    # The control changes something here: the test is not vacuous.
    assert not np.array_equal(expected, numpy_greedy(start, state["bias"], 8))


@pytest.mark.parametrize("controls", CONTROLS, ids=str)
def test_beam_width_one_and_top_k_one_equal_greedy_with_controls(controls):
    state, start = controlled_inputs()
    step_fn, common = random_step(), (8, END)
    greedy = decoding.greedy_search(step_fn, state, start, *common, **controls)
    beam, _ = decoding.beam_search(
        step_fn, state, start, *common, beam_width=1, **controls
    )
    sampled = decoding.sample(
        step_fn, state, start, *common, top_k=1, seed=4, **controls
    )
    np.testing.assert_array_equal(np.asarray(beam), np.asarray(greedy))
    np.testing.assert_array_equal(np.asarray(sampled), np.asarray(greedy))


def controlled_scores(max_length, alpha, shift, **controls):
    """GNMT score of every canonical sequence under the controls."""
    scores = {}
    for sequence in itertools.product(range(7), repeat=max_length):
        length = sequence.index(END) + 1 if END in sequence else max_length
        if any(t != PAD for t in sequence[length:]):
            continue  # not canonical: pads after the end only
        previous, total = START, 0.0
        for index, token in enumerate(sequence[:length]):
            logits = np.log(TABLE[previous]) + shift
            logits = numpy_controls(logits, sequence[:index], **controls)
            logits = logits.astype("float64")
            total += logits[token] - np.log(np.sum(np.exp(logits)))
            previous = token
        scores[sequence] = total / ((5 + length) / 6) ** alpha
    return scores


@pytest.mark.parametrize("shift", [0.0, 4.0])  # all logits < 0, or mixed
@pytest.mark.parametrize("controls", CONTROLS, ids=str)
def test_beam_search_with_controls_finds_the_brute_force_optimum(
    controls, shift
):
    # 343 = 7³ beams keep every live prefix of 3 tokens: beam search over 4
    # tokens is exhaustive, so its beams are exactly the best sequences of
    # the brute force, with their exact scores (a 3-gram fits twice in 4).
    def step_fn(tokens, state, index):
        logits, state = table_step(tokens, state, index)
        return logits + shift, state

    tokens, scores = decoding.beam_search(
        step_fn, np.zeros((1,), "int32"), np.array([START]), 4, END,
        beam_width=343, length_penalty=0.6, return_all_beams=True,
        **controls,
    )  # fmt: skip
    tokens, scores = np.asarray(tokens)[0], np.asarray(scores)[0]
    reference = controlled_scores(4, 0.6, shift, **controls)
    live = scores > MASK / 10  # beams without a masked token
    expected = sorted(s for s in reference.values() if s > MASK / 10)[::-1]
    np.testing.assert_allclose(scores[live], expected[:343], rtol=1e-5)
    for sequence, score in zip(tokens[live], scores[live]):
        np.testing.assert_allclose(score, reference[tuple(sequence)], rtol=1e-5)


def test_beams_follow_their_own_history():
    # Every beam of every step obeys the n-gram rule on its own tokens.
    state, start = controlled_inputs()
    tokens, _ = decoding.beam_search(
        random_step(), state, start, 9, END, beam_width=4,
        no_repeat_ngram_size=2, return_all_beams=True,
    )  # fmt: skip
    for row in np.asarray(tokens).reshape(-1, 9):
        row = list(row[: list(row).index(END) + 1] if END in row else row)
        bigrams = list(zip(row, row[1:]))
        assert len(bigrams) == len(set(bigrams)), row


def sampled_rows(seeds=range(12), rows=48, max_length=7, **controls):
    """Sampled tokens of a flat step function, every seed stacked."""
    weights = np.zeros((9, 9), "float32")
    weights[:, END] = -1.0  # ends, but not at once

    def step_fn(tokens, state, index):
        return ops.take(ops.convert_to_tensor(weights), tokens, 0), state

    start = np.ones(rows, "int32")
    return np.concatenate([
        np.asarray(decoding.sample(
            step_fn, (), start, max_length, END, seed=seed, **controls
        ))
        for seed in seeds
    ])  # fmt: skip


def test_sampling_never_breaks_the_masks_over_many_seeds():
    tokens = sampled_rows(
        min_length=3, no_repeat_ngram_size=2, bad_token_ids=[4, 7]
    )
    assert not np.isin(tokens, [4, 7]).any()
    assert not (tokens[:, :3] == END).any() and (tokens == END).any()
    for row in tokens:
        row = list(row[: list(row).index(END) + 1] if END in row else row)
        bigrams = list(zip(row, row[1:]))
        assert len(bigrams) == len(set(bigrams)), row
    free = sampled_rows(seeds=range(2))  # the same draws, uncontrolled
    assert np.isin(free, [4, 7]).any() and (free[:, :3] == END).any()


@pytest.mark.parametrize("forced", [3, 2])  # a positive, a negative logit
def test_sampled_frequencies_follow_the_penalised_softmax(forced):
    # Step 0 always gives `forced`; step 1 samples with its logit penalised.
    second = np.array([1.0, 0.5, -0.5, 1.5], "float32")
    rows = 4000

    def step_fn(tokens, state, index):
        first = ops.one_hot(ops.full((rows,), forced), 4) * 50.0
        return ops.where(index == 0, first, second), state

    tokens = decoding.sample(
        step_fn, (), np.ones(rows, "int32"), 2, seed=0, repetition_penalty=3.0
    )
    assert (np.asarray(tokens)[:, 0] == forced).all()
    counts = np.bincount(np.asarray(tokens)[:, 1], minlength=4) / rows
    penalised = numpy_controls(second, [forced], repetition_penalty=3.0)
    expected = np.exp(penalised) / np.sum(np.exp(penalised))
    np.testing.assert_allclose(counts, expected, atol=0.03)


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_min_length_beyond_max_length_means_no_row_ends(method):
    # Allowed, as HF allows it: the end id is masked at every step.
    state, start = controlled_inputs()
    decode = getattr(decoding, f"{method}_search")
    tokens = decode(random_step(), state, start, 6, END, min_length=9)
    tokens = np.asarray(tokens[0] if method == "beam" else tokens)
    assert not (tokens == END).any() and not (tokens == PAD).any()


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_decoding_with_controls_compiles_with_xla(method):
    state, start = controlled_inputs()
    controls = CONTROLS[-1]

    def decode(state, start):
        if method == "greedy":
            return decoding.greedy_search(
                random_step(), state, start, 6, END, **controls
            )
        if method == "beam":
            return decoding.beam_search(
                random_step(), state, start, 6, END, beam_width=3, **controls
            )[0]
        return decoding.sample(
            random_step(), state, start, 6, END, seed=5, **controls
        )

    np.testing.assert_array_equal(
        np.asarray(compiled(decode)(state, start)),
        np.asarray(decode(state, start)),
    )


def test_default_controls_return_the_logits_untouched():
    logits = ops.convert_to_tensor(np.ones((2, 7), "float32"))
    tokens = np.full((2, 3), 4, "int32")
    assert decoding.Controls().apply(logits, tokens, 2, END) is logits


def test_bad_token_ids_are_kept_as_a_sorted_tuple():
    for ids in ([5, 3, 5], (3, 5), np.array([5, 3])):
        assert DecodingOptions(bad_token_ids=ids).bad_token_ids == (3, 5)
        assert DecodingOptions(bad_token_ids=ids) == DecodingOptions(
            bad_token_ids=[3, 5]
        )
    assert DecodingOptions(bad_token_ids=[]) == DecodingOptions()


@pytest.mark.parametrize(
    "options",
    [
        {"min_length": -1},
        {"min_length": 2.5},
        {"min_length": None},
        {"no_repeat_ngram_size": -2},
        {"no_repeat_ngram_size": True},
        {"repetition_penalty": 0.0},
        {"repetition_penalty": -1.2},
        {"repetition_penalty": float("inf")},
        {"repetition_penalty": float("nan")},
        {"repetition_penalty": "2"},
        {"bad_token_ids": 4},
        {"bad_token_ids": "4"},
        {"bad_token_ids": [4.0]},
        {"bad_token_ids": [-1]},
        {"bad_token_ids": [True]},
        {"bad_token_ids": [[4, 5]]},
    ],
    ids=str,
)
@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_decoders_and_generate_check_the_controls_alike(options, method):
    state, start = np.zeros((1,), "int32"), np.array([START])
    name = next(iter(options))
    decode = DECODERS[method]
    with pytest.raises(ValueError, match=f"argument `{name}`") as direct:
        decode(table_step, state, start, 3, END, **options)
    with pytest.raises(ValueError, match=f"argument `{name}`") as generate:
        DecodingOptions(method=method, **options)
    assert str(direct.value) == str(generate.value)


@pytest.mark.parametrize("method", ["greedy_search", "beam_search", "sample"])
def test_bad_token_ids_beyond_the_vocabulary_name_the_argument(method):
    state, start = np.zeros((1,), "int32"), np.array([START])
    with pytest.raises(ValueError, match="argument `bad_token_ids`.*< 7"):
        getattr(decoding, method)(
            table_step, state, start, 3, END, bad_token_ids=[2, 7]
        )


def test_argmax_is_numpy_argmax_first_on_ties():
    """The converter-friendly argmax of greedy and sampling: NumPy's,
    ties included (the first index wins)."""
    rng = np.random.default_rng(0)
    logits = rng.integers(-3, 3, (50, 7)).astype("float32")  # many ties
    logits[0] = 1.0  # all tied
    got = np.asarray(utils.argmax(logits))
    np.testing.assert_array_equal(got, np.argmax(logits, axis=-1))
    assert got.dtype == np.int32
