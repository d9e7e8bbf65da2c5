"""A model's decoding methods captured as PyTorch graphs, for `generate`.

Eager PyTorch runs each Keras layer call through Keras's Python machinery
(argument binding, masks, autocast and name scopes) and each `keras.ops`
call through its dispatch: for a small Transformer about four fifths of
`generate`'s time. `Captured` traces a model method (`decoding_state`,
`decoding_step`) once per input shape with `torch.export` (non-strict: the
Python runs once on fake tensors, no compiler), drops the graph's no-op
nodes, and then runs only its tensor operations. The weights are inputs of
the graph (a `keras.StatelessScope` maps them), so a captured method never
goes stale when the model trains on. Capturing takes seconds (7 s for both
methods of a 2+2-block Transformer), not `torch.compile`'s minutes, and
`generate` pads sources to length buckets so that a few shapes serve every
input.

The first call of each shape runs eagerly (building any layer not built
yet) and the graph must reproduce its outputs. A method that `torch.export`
cannot capture (data-dependent Python control flow in a user's layer, say)
keeps running eagerly, with a warning.
"""

import warnings

import keras


class Captured:
    """`getattr(model, method)`, run as a graph captured once per shape.

    Args:
        model: the model (its `variables` become the graph's inputs).
        method: the name of a method of `model` that takes nests of tensors
            and Python scalars and returns a nest of tensors.

    Call arguments:
        *args: the method's; Python scalars are fixed in the graph (a new
            value is a new capture), tensors are inputs.

    Returns:
        The method's outputs, computed by the captured graph.

    Example:
        >>> step = Captured(model, "decoding_step")  # doctest: +SKIP
        >>> step(tokens, state, index)  # doctest: +SKIP
    """

    def __init__(self, model, method):
        self.model = model
        self.method = method
        self.graphs = {}  # signature -> (variables, graph), or None: eager

    def __call__(self, *args):
        eager = getattr(self.model, self.method)
        key = _signature(args)
        if key not in self.graphs:
            outputs = eager(*args)
            self.graphs[key] = self._capture(args, outputs)
            return outputs
        if self.graphs[key] is None:
            return eager(*args)
        variables, graph = self.graphs[key]
        return graph.forward([v.value for v in variables], *args)

    def _capture(self, args, expected):
        """`(variables, graph)`, or `None` (with a warning) if the method
        cannot be captured or its graph computes other outputs."""
        import torch

        model, method = self.model, self.method
        variables = model.variables

        class Method(torch.nn.Module):
            def forward(self, values, *args):
                mapping = list(zip(variables, values))
                with keras.StatelessScope(state_mapping=mapping):
                    return getattr(model, method)(*args)

        arguments = ([v.value for v in variables], *args)
        # Copies: torch.export would merge inputs that are one tensor now
        # (a decoder's first state is the encoder's) but not later.
        distinct = keras.tree.map_structure(
            lambda x: x.clone() if isinstance(x, torch.Tensor) else x,
            arguments,
        )
        try:
            program = torch.export.export(Method(), distinct, strict=False)
            graph = _without_no_ops(program.module())
            _check_equal(graph.forward(*arguments), expected)
        except Exception as error:  # whatever torch.export cannot trace
            warnings.warn(
                f"{type(model).__name__}.generate runs `{method}` eagerly "
                "on PyTorch: torch.export could not capture it "
                f"({type(error).__name__}: {str(error)[:300]})",
                stacklevel=5,
            )
            return None
        return variables, graph


def _signature(args):
    """What a graph is specialised to: the structure of `args`, the shapes
    and dtypes of its tensors and the values of its Python scalars."""
    leaves = keras.tree.flatten(args)
    return repr(keras.tree.map_structure(lambda _: 0, args)), tuple(
        (tuple(leaf.shape), leaf.dtype) if hasattr(leaf, "shape") else leaf
        for leaf in leaves
    )


def _check_equal(outputs, expected):
    """Raise a `ValueError` unless the graph's outputs are the eager ones."""
    import torch

    for got, want in zip(
        keras.tree.flatten(outputs), keras.tree.flatten(expected)
    ):
        if got.shape != want.shape or not torch.allclose(
            got.float(), want.float(), rtol=1e-4, atol=1e-5, equal_nan=True
        ):
            raise ValueError("the captured graph computes other outputs")


def _without_no_ops(module):
    """`module` without the graph's no-op nodes: the metadata checks, the
    copies of constants and the dtype/device conversions to what a tensor
    already is, which `keras.ops`'s `convert_to_tensor` leaves at every
    call (two thirds of a Transformer step's nodes). The graph is
    functional (no in-place updates), so an alias serves as the copy."""
    import torch

    aten = torch.ops.aten
    graph = module.graph
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target == aten._assert_tensor_metadata.default:
            graph.erase_node(node)
        elif node.target == aten.lift_fresh_copy.default or (
            node.target in (aten.to.dtype_layout, aten.to.dtype)
            and _same_kind(node.args[0], node)
        ):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    graph.eliminate_dead_code()
    module.recompile()
    return module


def _same_kind(before, after):
    """Whether two nodes' tensors have the same dtype and device."""
    before, after = before.meta.get("val"), after.meta.get("val")
    return (
        before is not None
        and after is not None
        and before.dtype == after.dtype
        and before.device == after.device
    )
