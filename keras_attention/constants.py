"""Reserved token ids and masking values, defined once for the package.

Every tokenizer, data set, model and decoding default uses the same four
reserved ids, so a vocabulary built by `keras_attention.text` feeds the
models and decoders without a mapping:

| id | token | meaning |
|---|---|---|
| 0 | `[PAD]` | padding; also written after the end token |
| 1 | `[START]` | first input token of every target sequence |
| 2 | `[END]` | ends a sequence |
| 3 | `[UNK]` | a piece outside the vocabulary |
"""

import keras

PAD_ID = 0
START_ID = 1
END_ID = 2
UNK_ID = 3
RESERVED_TOKENS = ("[PAD]", "[START]", "[END]", "[UNK]")


def mask_value(dtype="float32"):
    """Large finite negative number used for masked logits in `dtype`.

    Finite so that `x - max(x)` inside a softmax never computes `inf - inf`;
    small enough in magnitude to be representable in float16.

    Args:
        dtype: a dtype name or object. Defaults to `"float32"`.

    Returns:
        A Python float.

    Examples:
        >>> mask_value("float16"), mask_value("float32")
        (-60000.0, -1000000000.0)
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "float16":
        return -6.0e4  # float16 max is 65504
    return -1.0e9
