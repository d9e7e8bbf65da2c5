"""How the Transformer models' weights shard over a device mesh.

`keras.distribution.ModelParallel` places every variable by its path through
a `keras.distribution.LayoutMap` (regular expressions, matched in full).
The Transformer models shard (Megatron-style, on the model axis):

| weights (path) | shape | sharded axis |
|---|---|---|
| `*token_embedding/embeddings` | `(V, d)` | the model width `d` |
| `*attention/{query,key,value,gate}/kernel` | `(d, H, D)` | the heads `H` |
| `*attention/{query,key,value,gate}/bias` | `(H, D)` | the heads `H` |
| `*attention/attention_output/kernel` | `(H, D, d)` | the heads `H` |
| `*feed_forward/intermediate/{kernel,bias}` | `(d, F)`, `(F,)` | `F` |
| `*feed_forward/output/kernel` | `(F, d)` | the width `F` |

Everything else (layer norms, output biases, the logits layer, whose
vocabulary or class count need not divide the axis, an MLA's latent
down-projections, a linear attention's random features, differential
attention's lambdas) is replicated. Every attention kind keeps the
`query`/`key`/`value`/`attention_output` names of keras's layout, so one
map covers them all; MLA's `key`/`value` up-projections `(C, H, D)` shard
on their heads too. The head count (and the key/value head count with GQA),
`d` and `F` must divide the model axis' size.
"""

import keras


def _check_axis(device_mesh, name, value):
    if value not in device_mesh.axis_names:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected one of the "
            f"device mesh's axis names {tuple(device_mesh.axis_names)}. "
            f"Received: {name}={value!r}"
        )


def transformer_layout_map(
    device_mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch"
):
    """The `LayoutMap` of `Transformer` and `TransformerClassifier`.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh`.
        model_parallel_dim_name: the mesh axis the weights shard over.
            Defaults to `"model"`.
        data_parallel_dim_name: the mesh axis the batch splits over
            (give it as `ModelParallel(batch_dim_name=...)`); checked here,
            no weight is sharded on it. Defaults to `"batch"`.

    Returns:
        A `keras.distribution.LayoutMap` for `ModelParallel(layout_map=...)`.
    """
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise ValueError(
            "Invalid value for argument `device_mesh`: expected a "
            "`keras.distribution.DeviceMesh`. Received: "
            f"device_mesh={device_mesh!r}"
        )
    _check_axis(device_mesh, "model_parallel_dim_name", model_parallel_dim_name)
    _check_axis(device_mesh, "data_parallel_dim_name", data_parallel_dim_name)
    model = model_parallel_dim_name
    layout_map = keras.distribution.LayoutMap(device_mesh)
    layout_map[".*token_embedding/embeddings"] = (None, model)
    projections = ".*attention/(query|key|value|gate)"
    layout_map[f"{projections}/kernel"] = (None, model, None)
    layout_map[f"{projections}/bias"] = (model, None)
    layout_map[".*attention/attention_output/kernel"] = (model, None, None)
    layout_map[".*feed_forward/intermediate/kernel"] = (None, model)
    layout_map[".*feed_forward/intermediate/bias"] = (model,)
    layout_map[".*feed_forward/output/kernel"] = (model, None)
    return layout_map
