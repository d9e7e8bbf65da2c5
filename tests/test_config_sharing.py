"""Configs that layers keep stay their own inside Keras's object sharing.

`model.save` and `keras.models.load_model` run in Keras's
`ObjectSharingScope`: two configs of objects with the same `id()` are
marked as one object (`shared_object_id`), and loading hands the first
object back for the second. A layer keeps configs of its parts (score,
modifiers, initializers) and builds from them while a model loads; a
marked config once brought a `SoftCap` back as a score layer, at random
(a temporary's `id()` had gone to the next object).
"""

import keras
import pytest
from keras.src.saving.serialization_lib import ObjectSharingScope

from keras_attention import mods
from keras_attention import scores
from keras_attention import utils
from keras_attention.layers.kinds import serialize_options
from keras_attention.models import Transformer

pytestmark = pytest.mark.backend_neutral

SERIALIZERS = {
    "utils.serialize": (
        utils.serialize,
        lambda: keras.initializers.GlorotUniform(seed=1),
    ),
    "scores.serialize": (
        scores.serialize,
        lambda: scores.get("additive", units=4),
    ),
    "mods.serialize": (mods.serialize, lambda: mods.SoftCap(2.0)),
    "serialize_options": (
        lambda obj: serialize_options({"score_mod": obj})["score_mod"],
        lambda: mods.SoftCap(1.0),
    ),
}


@pytest.mark.parametrize("name", sorted(SERIALIZERS))
def test_kept_configs_are_never_marked_as_one_object(name):
    serialize, make = SERIALIZERS[name]
    obj = make()
    with ObjectSharingScope():
        first = serialize(obj)
        # The same id() again: Keras marks both configs (its own copies).
        second = serialize(obj)
        assert "shared_object_id" not in repr((first, second))
        restored = [
            keras.saving.deserialize_keras_object(c) for c in (first, second)
        ]
    assert first == second
    assert type(restored[0]) is type(obj)
    assert restored[0] is not restored[1]


def test_a_model_built_while_keras_shares_objects_keeps_its_parts_apart():
    config = keras.saving.serialize_keras_object(
        Transformer(
            20,
            25,
            num_layers=2,
            hidden_dim=16,
            num_heads=2,
            intermediate_dim=32,
            score_mod=mods.SoftCap(0.5),
        )  # fmt: skip
    )
    for _ in range(3):  # as load_model builds it
        with ObjectSharingScope():
            model = keras.saving.deserialize_keras_object(config)
        attentions = [
            block.self_attention
            for stack in ("encoder", "decoder")
            for block in model.get_layer(stack).blocks
        ]
        assert all(type(a.score) is scores.ScaledDot for a in attentions)
        assert all(type(a.score_mod) is mods.SoftCap for a in attentions)
        assert len({id(a.score) for a in attentions}) == len(attentions)
