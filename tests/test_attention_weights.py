"""`visualization.attention_weights`: every layer's weights, from the
model's own layers."""

import json

import keras
import numpy as np
import pytest

from keras_attention.models import Seq2Seq
from keras_attention.models import Transformer
from keras_attention.models import TransformerClassifier
from keras_attention.visualization import attention_html
from keras_attention.visualization import attention_weights

INPUTS = {
    "source": np.array([[4, 5, 6, 7, 0], [8, 9, 0, 0, 0]]),
    "target_in": np.array([[1, 7, 8, 0], [1, 5, 6, 9]]),
}


def transformer(**kwargs):
    keras.utils.set_random_seed(0)
    return Transformer(
        20, 20, num_layers=2, hidden_dim=8, num_heads=2, intermediate_dim=8,
        **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("attention", ["multi_head", "latent", "linear"])
def test_transformer_layers_by_name_and_the_model_own_attention(attention):
    model = transformer(attention=attention)
    weights = attention_weights(model, INPUTS)
    assert list(weights) == [
        "encoder/block_0/self_attention",
        "encoder/block_1/self_attention",
        "decoder/block_0/self_attention",
        "decoder/block_0/cross_attention",
        "decoder/block_1/self_attention",
        "decoder/block_1/cross_attention",
    ]
    assert weights["encoder/block_0/self_attention"].shape == (2, 2, 5, 5)
    assert weights["decoder/block_1/self_attention"].shape == (2, 2, 4, 4)
    cross = weights["decoder/block_1/cross_attention"]
    assert cross.shape == (2, 2, 4, 5) and cross.dtype == np.float32
    # Padded source keys get no weight; rows of real queries sum to 1.
    assert (cross[1, :, :, 2:] == 0).all()
    np.testing.assert_allclose(cross[1].sum(-1), 1.0, atol=1e-5)
    # Causal decoder self-attention: nothing above the diagonal.
    decoder_self = weights["decoder/block_0/self_attention"]
    assert (np.triu(decoder_self[0, 0], 1) == 0).all()
    # The model's own attention: the last block's cross-attention over
    # heads is what `generate(..., return_attention=True)` reports.
    state = model.decoding_state(INPUTS["source"], 4)
    own = model.teacher_forced_alignments(state, INPUTS["target_in"])
    real = INPUTS["target_in"] > 0  # padded queries weigh nothing here
    np.testing.assert_allclose(
        cross.mean(1)[real], np.asarray(own)[real], atol=1e-5
    )
    assert (cross[0, :, 3] == 0).all()


def test_seq2seq_alignments_are_those_of_generate():
    keras.utils.set_random_seed(0)
    model = Seq2Seq(20, 20, embedding_dim=6, units=5)
    source = INPUTS["source"]
    tokens, attention = model.generate(source, 4, return_attention=True)
    tokens = np.asarray(tokens)
    target_in = np.concatenate([np.ones((2, 1), int), tokens[:, :-1]], 1)
    target_in[target_in == 0] = 3  # after the end: any token
    weights = attention_weights(
        model, {"source": source, "target_in": target_in}
    )
    assert list(weights) == ["decoder/alignments"]
    alignments = weights["decoder/alignments"]
    assert alignments.shape == (2, 1, 4, 5)
    emitted = tokens > 0
    np.testing.assert_allclose(
        alignments[:, 0][emitted], np.asarray(attention)[emitted], atol=1e-5
    )


@pytest.mark.parametrize("pooling", ["cls", "attention", "mean"])
def test_classifier_blocks_and_pooling(pooling):
    keras.utils.set_random_seed(0)
    model = TransformerClassifier(
        20, 3, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=8,
        pooling=pooling,
    )  # fmt: skip
    tokens = INPUTS["source"]
    weights = attention_weights(model, tokens)
    length = 6 if pooling == "cls" else 5  # [CLS] first
    assert weights["encoder/block_0/self_attention"].shape == (
        2, 2, length, length,
    )  # fmt: skip
    assert ("pooling" in weights) == (pooling == "attention")
    if pooling == "attention":
        np.testing.assert_allclose(
            weights["pooling"][:, 0, 0],
            model.pooling_weights(tokens),
            atol=1e-6,
        )


def test_bad_model_and_inputs_name_the_argument():
    with pytest.raises(ValueError, match="`model`"):
        attention_weights(keras.layers.Dense(3), INPUTS)
    model = transformer()
    with pytest.raises(ValueError, match="target_in"):
        attention_weights(model, {"source": INPUTS["source"]})
    with pytest.raises(ValueError, match="source"):
        attention_weights(
            model, {"source": INPUTS["source"] + 30, "target_in": [[1]]}
        )


def test_a_model_page_embeds_the_model_weights(tmp_path):
    model = transformer()
    inputs = {"source": INPUTS["source"][:1, :4], "target_in": [[1, 7, 8]]}
    weights = {k: w[0] for k, w in attention_weights(model, inputs).items()}
    path = tmp_path / "model.html"
    page = attention_html(weights, list("abcd"), list("xyz"), path=path)
    assert path.read_text(encoding="utf-8") == page
    payload = page.split('id="attention-data">')[1].split("</script>")[0]
    data = json.loads(payload)
    assert data["layers"] == list(weights)
    for embedded, expected in zip(data["weights"], weights.values()):
        np.testing.assert_allclose(embedded, expected, atol=1e-4)
    assert data["queries"][0] == list("abcd")  # encoder: the source
    assert data["keys"][-1] == list("abcd")  # cross-attention: the source
