"""Generation, written once for every encoder-decoder model.

`Generator` gives a model `generate` (compiled once per set of options, on
every backend) and `generate_function` (the same computation as plain
`keras.ops`, to trace, export or wrap). A model supplies only three methods:

- `decoding_state(source, max_length)`: the decoder's state after reading
  the source (any nest of tensors with batch first);
- `decoding_step(tokens, state, index)`: next-token logits `(B, V)`, the
  new state and the step's attention over the source `(B, S)`;
- `teacher_forced_alignments(state, target_in)`: the attention `(B, T, S)`
  of a whole target, for `return_attention=True`.

The decoding loops themselves are the pure functions of
`keras_attention.decoding`; `DecodingOptions` holds (and checks) their
options.
"""

import collections
import dataclasses

import keras
from keras import ops

from keras_attention import decoding
from keras_attention import utils
from keras_attention.constants import END_ID
from keras_attention.constants import PAD_ID
from keras_attention.constants import START_ID
from keras_attention.constants import mask_value
from keras_attention.models.captured import Captured

METHODS = ("greedy", "beam", "sample")


@dataclasses.dataclass(frozen=True)
class DecodingOptions:
    r"""How `generate` decodes: the method and its options, checked once.

    Args:
        method: `"greedy"`, `"beam"` or `"sample"` (see
            `keras_attention.decoding`). Defaults to `"greedy"`.
        beam_width: beams of `"beam"`; `1` equals greedy. Defaults to `4`.
        length_penalty: GNMT $\alpha$ of `"beam"`. Defaults to `0.6`.
        coverage_penalty: GNMT $\beta$ of `"beam"`. Defaults to `0.0`.
        temperature: of `"sample"`. Defaults to `1.0`.
        top_k: of `"sample"`, or `None`. Defaults to `None`.
        top_p: of `"sample"`, in $(0, 1]$, or `None`. Defaults to `None`.
        min_length: no end id (2) among the first `min_length` tokens;
            `>= max_length` means no row ends. Defaults to `0`.
        no_repeat_ngram_size: no n-gram of this size twice in a row's
            tokens (each beam's own, with `"beam"`); `0` for none.
            Defaults to `0`.
        repetition_penalty: CTRL's $\theta$ (Keskar et al. 2019): the
            logit $\ell_v$ of every token already generated in the row
            (once, however often) becomes $\ell_v / \theta$ if positive,
            else $\ell_v \theta$; `> 1` discourages repeats. Defaults to
            `1.0`.
        bad_token_ids: list of ids never emitted, or `None`; kept as a
            sorted tuple (part of the compile cache key). Defaults to
            `None`.

    The four controls are HF `GenerationConfig`'s, applied to the logits of
    every method by `keras_attention.decoding.Controls` (the penalty, then
    the masks; then temperature, top-k and top-p). Bad values are
    `ValueError`s naming the argument.
    """

    method: str = "greedy"
    beam_width: int = 4
    length_penalty: float = 0.6
    coverage_penalty: float = 0.0
    temperature: float = 1.0
    top_k: int = None
    top_p: float = None
    min_length: int = 0
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    bad_token_ids: tuple = None

    def __post_init__(self):
        utils.check_choice("method", self.method, METHODS)
        decoding.check_beam_options(
            self.beam_width, self.length_penalty, self.coverage_penalty
        )
        decoding.check_sampling_options(
            self.temperature, self.top_k, self.top_p
        )
        # Checked, and the ids kept as a sorted tuple: hashable, and equal
        # lists give one compiled function.
        ids = self.controls.bad_token_ids
        object.__setattr__(self, "bad_token_ids", ids)

    @property
    def controls(self):
        """The logit controls, a `keras_attention.decoding.Controls`."""
        return decoding.Controls(
            self.min_length,
            self.no_repeat_ngram_size,
            self.repetition_penalty,
            self.bad_token_ids,
        )

    def decode(self, step_fn, state, start_ids, max_length, seed):
        """Run the decoding loop of `method`; returns int32 `(B, L)`."""
        common = (step_fn, state, start_ids, max_length, END_ID, PAD_ID)
        controls = dataclasses.asdict(self.controls)
        if self.method == "greedy":
            return decoding.greedy_search(*common, **controls)
        if self.method == "sample":
            return decoding.sample(
                *common,
                temperature=self.temperature,
                top_k=self.top_k,
                top_p=self.top_p,
                seed=seed,
                **controls,
            )
        tokens, _ = decoding.beam_search(
            *common,
            beam_width=self.beam_width,
            length_penalty=self.length_penalty,
            coverage_penalty=self.coverage_penalty,
            **controls,
        )
        return tokens


def check_inputs(inputs, **vocab_sizes):
    """Raise unless each named input is `(B, T)` token ids of its vocabulary.

    Args:
        inputs: a dict of the model's inputs.
        **vocab_sizes: the vocabulary size of each input to check, e.g.
            `source=100`.
    """
    if not isinstance(inputs, dict) or not set(vocab_sizes) <= set(inputs):
        raise ValueError(
            f"The model takes a dict with the keys {sorted(vocab_sizes)}. "
            f"Received: {type(inputs).__name__} "
            f"{sorted(inputs) if isinstance(inputs, dict) else ''}"
        )
    for name, vocab_size in vocab_sizes.items():
        ids = inputs[name]
        utils.check_shape(name, ops.convert_to_tensor(ids), (None, None))
        utils.check_token_ids(name, ids, vocab_size)


def never_reserved(logits):
    """float32 logits `(B, V)` that never pick pad or start.

    Id 0 only ever means "after the end" and id 1 only starts a sequence, so
    decoding must not emit them.
    """
    logits = ops.cast(logits, "float32")
    vocab = ops.arange(ops.shape(logits)[-1])
    reserved = ops.logical_or(vocab == PAD_ID, vocab == START_ID)
    return ops.where(reserved, mask_value(), logits)


def _bucket(size, low=1, limit=None):
    """The next power of two `>= size` (at least `low`), at most `limit`."""
    bucket = max(low, 1 << (int(size) - 1).bit_length())
    return bucket if limit is None else max(min(bucket, limit), size)


def _pad_to_bucket(source, limit):
    """`source (B, S)` with 0-rows and 0-columns up to its buckets: rows
    that are all padding and padding after a source change no real row's
    tokens (the masks), and JAX compiles once per bucket, not per shape."""
    batch, length = source.shape
    rows, columns = _bucket(batch), _bucket(length, 8, limit)
    widths = ((0, rows - batch), (0, columns - length))
    return ops.pad(source, widths)


def _unpad(outputs, batch, length):
    """The real rows of `outputs` (and the real source of the attention)."""
    if isinstance(outputs, (tuple, list)):
        tokens, attention = outputs
        return tokens[:batch], attention[:batch, :, :length]
    return outputs[:batch]


def _bucketed(run, limit):
    """`run(source, seed)` on the source padded to its bucket, cut back."""

    def bucketed(source, seed):
        outputs = run(_pad_to_bucket(source, limit), seed)
        return _unpad(outputs, *source.shape)

    return bucketed


def _compile(make_function, model):
    """`make_function(methods)` compiled for the backend, traced once.

    `make_function` returns `function(source, seed)`: generation with the
    given `(decoding_state, decoding_step)`, the model's own methods or
    their captured graphs. TensorFlow: a `tf.function` with unknown batch
    and source length. JAX: `jax.jit` of a stateless call (the weights are
    arguments, so they are not baked in as constants). PyTorch: eager
    without autograd; from a bucket's second call on, both methods run as
    graphs captured once per shape (`keras_attention.models.captured`). On
    JAX and PyTorch the source is padded to its bucket (`_pad_to_bucket`):
    one compilation or capture per bucket. `.compilations()` counts them there.
    """
    backend = keras.config.backend()
    methods = (model.decoding_state, model.decoding_step)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(
            make_function(methods),
            input_signature=[
                tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([], tf.int32),
            ],
            autograph=False,
        )
    if backend == "jax":
        import jax

        function = make_function(methods)

        def stateless(values, source, seed):
            mapping = list(zip(model.variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return function(source, seed)

        jitted = jax.jit(stateless)
        bucketed = _bucketed(
            lambda source, seed: jitted(
                [v.value for v in model.variables], source, seed
            ),
            model.max_positions,
        )
        bucketed.compilations = jitted._cache_size
        return bucketed
    if backend == "torch":
        import torch

        captured_methods = model.__dict__.setdefault(  # shared by options
            "_captured", tuple(Captured(model, m.__name__) for m in methods)
        )
        eager = make_function(methods)
        captured = make_function(captured_methods)
        calls = collections.Counter()

        @torch.no_grad()
        def run(source, seed):
            # A bucket's first call runs eagerly (a capture pays off only
            # when a shape repeats); the second captures; later ones run
            # the graphs.
            calls[tuple(source.shape)] += 1
            first = calls[tuple(source.shape)] == 1
            return (eager if first else captured)(source, seed)

        bucketed = _bucketed(run, model.max_positions)
        bucketed.compilations = lambda: sum(
            len(method.graphs) for method in captured_methods
        )
        return bucketed
    return make_function(methods)


class Generator:
    """Mixin of the encoder-decoder models: generation and bookkeeping.

    Gives a model `generate` and `generate_function`; the model implements
    `decoding_state`, `decoding_step` and `teacher_forced_alignments` (see
    the module docstring). `_keep(config, parts, dtype)` stores what the
    constructor built: the hyper-parameters (returned by `get_config`, and
    set as attributes), the named parts, and the `encoder` / `decoder`
    sub-models from the model's `_sub_models()`; the dtype policy the parts
    were built with is kept in the config too.
    """

    def _keep(self, config, parts, dtype):
        self._config = config
        self._built_dtype = dtype
        for name, value in config.items():
            setattr(self, name, value)
        self._parts = parts
        self.source_embedding = parts.source_embedding
        self.target_embedding = parts.target_embedding
        self.logits_layer = parts.logits
        self.encoder, self.decoder = self._sub_models()

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self._built_dtype),
            **self._config,
        }

    def call(self, inputs, training=None, mask=None):
        check_inputs(
            inputs,
            source=self.source_vocab_size,
            target_in=self.target_vocab_size,
        )
        return super().call(inputs, training=training, mask=mask)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def max_positions(self):
        """The longest sequence the model reads, `None` if unlimited."""
        return None

    def check_lengths(self, max_length, source_length=None):
        """Raise a `ValueError` (before any tracing) for lengths the model
        cannot decode; `source_length` is `None` when unknown."""
        return None  # no limit (a body, so that AutoGraph can convert it)

    def _check_generate(self, source, max_length, options):
        """The checks of `generate` and `generate_function`, written once.

        Raises a `ValueError` naming `max_length`, `source` or an option
        before any tracing; returns the `DecodingOptions` and the source as
        an int32 tensor.
        """
        options = DecodingOptions(**options)
        options.controls.check_vocabulary(self.target_vocab_size)
        utils.check_positive_int("max_length", max_length)
        check_inputs({"source": source}, source=self.source_vocab_size)
        source = ops.convert_to_tensor(source)
        if source.shape[1] == 0:  # nothing to attend to
            raise ValueError(
                "Invalid shape for argument `source`: expected at least one "
                f"token per row. Received: source.shape={tuple(source.shape)}"
            )
        source = ops.cast(source, "int32")
        self.check_lengths(max_length, source.shape[1])
        return options, source

    def generate_function(
        self, source, max_length, return_attention=False, seed=None, **options
    ):
        """`generate` as plain `keras.ops`, to trace, compile or export.

        Same arguments and returns as `generate`; nothing is compiled or
        cached here, so this is what an export endpoint wraps.
        """
        options, source = self._check_generate(source, max_length, options)
        methods = (self.decoding_state, self.decoding_step)
        return self._decode(
            methods, source, max_length, return_attention, seed, options
        )

    def _decode(
        self, methods, source, max_length, return_attention, seed, options
    ):
        """`generate_function`'s computation with the given `methods`,
        `(decoding_state, decoding_step)`: the model's own, or their
        captured graphs on PyTorch."""
        decoding_state, decoding_step = methods
        state = decoding_state(source, max_length)

        def step_fn(tokens, state, index):
            index = ops.convert_to_tensor(index, "int32")  # 0 at a beam start
            logits, state, alignments = decoding_step(tokens, state, index)
            return never_reserved(logits), state, alignments

        start = ops.full((ops.shape(source)[0],), START_ID, "int32")
        if options.method == "sample":
            seed = utils.draw_seed(seed)
        tokens = options.decode(step_fn, state, start, max_length, seed)
        if not return_attention:
            return tokens
        # The attention of the chosen tokens: one teacher-forced pass over
        # [start, y_1..y_{L-1}] computes exactly what decoding computed.
        target_in = ops.concatenate(
            [ops.expand_dims(start, 1), tokens[:, :-1]], axis=1
        )
        alignments = self.teacher_forced_alignments(state, target_in)
        emitted = ops.expand_dims(ops.not_equal(tokens, PAD_ID), -1)
        return tokens, ops.where(emitted, alignments, 0.0)

    def generate(
        self, source, max_length, return_attention=False, seed=None, **options
    ):
        r"""Generate target token ids for a batch of sources.

        Compiled once per `(max_length, options, return_attention)`: for
        any batch size and source length on TensorFlow; on JAX once per
        bucket (batch padded to a power of two, source length to a power
        of two of at least 8, with rows and columns of padding that change
        no token). PyTorch runs the loop eagerly, and from a bucket's second
        call on the decoding state and step as graphs captured by
        `torch.export` (seconds per bucket, on that call; see
        `keras_attention.models.captured`).

        Args:
            source: int `(B, S)`, padded with 0.
            max_length: int, the number of target tokens generated.
            return_attention: whether to also return the attention over
                the source. Defaults to `False`.
            seed: int seed of `method="sample"`; `None` draws one per call.
                Defaults to `None`.
            **options: the `DecodingOptions`: `method` (`"greedy"`,
                `"beam"`, `"sample"`), `beam_width`, `length_penalty`,
                `coverage_penalty`, `temperature`, `top_k`, `top_p`, and
                for every method HF's logit controls: `min_length` (no end
                id among the first `min_length` tokens, default `0`),
                `no_repeat_ngram_size` (no n-gram of that size twice in a
                row, default `0`: off), `repetition_penalty` ($\theta$:
                the logit of each token already generated is divided by it
                if positive, else multiplied; default `1.0`: off) and
                `bad_token_ids` (never emitted, default `None`).

        Returns:
            int32 tokens `(B, max_length)` (without the start token, 0
            after the end token 2), and float32 attention
            `(B, max_length, S)` if `return_attention` (0 where no token
            was emitted).
        """
        options, source = self._check_generate(source, max_length, options)
        seed = utils.draw_seed(seed)  # a new one per call unless given
        key = (int(max_length), options, bool(return_attention))
        functions = self.__dict__.setdefault("_generate_functions", {})
        if key not in functions:
            functions[key] = _compile(
                lambda methods: (
                    lambda source, seed: self._decode(
                        methods, source, key[0], return_attention, seed, options
                    )
                ),
                self,
            )
        return functions[key](source, ops.convert_to_tensor(seed, "int32"))
