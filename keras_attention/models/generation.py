"""What every generating model shares: method dispatch, compilation and
the mask-free outputs of its encoder sub-model."""

import weakref

import keras
from keras import ops

from keras_attention import decoding

METHODS = ("greedy", "beam", "sample")
PAD_ID, START_ID, END_ID = 0, 1, 2


def next_token_logits(logits_layer, hidden):
    """float32 logits `(B, V)` that never pick pad or start.

    Id 0 only ever means "after the end" and id 1 only starts a sequence, so
    decoding must not emit them.
    """
    logits = ops.cast(logits_layer(hidden), "float32")  # (B, V)
    vocab = ops.arange(ops.shape(logits)[-1])
    reserved = ops.logical_or(vocab == PAD_ID, vocab == START_ID)
    return ops.where(reserved, decoding.NEG_INF, logits)


def run_decoding(
    method,
    step_fn,
    state,
    start_ids,
    max_length,
    end_id,
    pad_id,
    beam_width=4,
    length_penalty=0.6,
    coverage_penalty=0.0,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
):
    """Run `greedy_search`, `beam_search` or `sample`; return the tokens."""
    common = (step_fn, state, start_ids, max_length, end_id, pad_id)
    if method == "greedy":
        return decoding.greedy_search(*common)
    if method == "beam":
        tokens, _ = decoding.beam_search(
            *common,
            beam_width=beam_width,
            length_penalty=length_penalty,
            coverage_penalty=coverage_penalty,
        )
        return tokens
    if method == "sample":
        return decoding.sample(
            *common,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )
    raise ValueError(f"`method` must be one of {METHODS}. Received: {method=}")


_COMPILED = weakref.WeakKeyDictionary()  # model -> {options: function}


def compile_generate(model, source, max_length, **options):
    """Call `model.generate_function`, traced once per set of options.

    On TensorFlow the decoding loop is wrapped in a `tf.function` (cached
    per model and options), so repeated calls do not re-trace; on other
    backends it runs as is.
    """
    options["max_length"] = int(max_length)
    source = keras.ops.convert_to_tensor(source, "int32")
    if keras.config.backend() != "tensorflow":
        return model.generate_function(source, **options)
    import tensorflow as tf

    functions = _COMPILED.setdefault(model, {})
    key = tuple(sorted(options.items()))
    if key not in functions:
        functions[key] = tf.function(
            lambda source: model.generate_function(source, **options),
            reduce_retracing=True,
            autograph=False,
        )
    return functions[key](source)


@keras.saving.register_keras_serializable(package="keras_attention")
class Unmasked(keras.layers.Layer):
    """Identity that drops the keras mask (for `.encoder` sub-model outputs).

    The `.decoder` sub-models take the source padding as an explicit
    `memory_mask` input, so the encoder's memory is returned without a mask
    attached; passing it on then raises no "destroys the mask" warning.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return ops.copy(inputs)  # a new tensor: the input keeps its mask

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return input_shape
