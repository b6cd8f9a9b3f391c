"""neuralgraph: neural networks as PyTorch Geometric graphs, and learning on them.

The face holds the common path; everything else lives in named submodules:

================  ==============================================================================
build             :class:`Architecture`, :func:`mlp_architecture`; the modules a converted model may hold
                  besides torch's: :class:`Residual`, :class:`Sine`, :class:`Offset`, :class:`Reorder`
convert           :func:`to_graph`, :func:`batch_models`, :func:`stacked_to_batch`,
                  :func:`from_weights_biases`, :func:`to_weights_biases`, :class:`NeuralGraph`
rebuild           :func:`to_model`, :func:`to_models`, :func:`batch_to_stacked`
permute           :func:`permute_hidden`
draw              :func:`draw`
data              :class:`INRDataset`
files             :func:`save`, :func:`load`
trained runs      :func:`predict`, :func:`embed`
================  ==============================================================================

Submodules: :mod:`~neuralgraph.schema` (the format: fields, node and edge kinds),
:mod:`~neuralgraph.architecture`, :mod:`~neuralgraph.graph` (conversions, parameter readers),
:mod:`~neuralgraph.symmetry`, :mod:`~neuralgraph.interop` (other libraries' layouts),
:mod:`~neuralgraph.inference`, :mod:`~neuralgraph.inr`, :mod:`~neuralgraph.zoo`,
:mod:`~neuralgraph.train`, :mod:`~neuralgraph.tasks`, :mod:`~neuralgraph.visualize`, ...
Names the face had before it was made small still work for one release, with a
``DeprecationWarning`` that names their submodule.
"""
from .architecture import Architecture, Offset, Reorder, Residual, Sine, mlp_architecture
from .graph import NeuralGraph, batch_to_stacked, stacked_to_batch, to_graph, to_model, to_models
from .io import load, save
from .interop import batch_models, from_weights_biases, register_safe_globals, to_weights_biases
from .symmetry import permute_hidden

__version__ = "0.1.0"

register_safe_globals()   # plain torch.load(path) (weights_only=True) reads saved graphs, batches and datasets

#: Names of the face loaded when first used: they need the INR, training or plotting code, which
#: ``import neuralgraph`` (and the processors below it) need not load.
_LAZY = {"embed": "neuralgraph.inference", "predict": "neuralgraph.inference", "draw": "neuralgraph.visualize",
         "INRDataset": "neuralgraph.inr"}

#: Names the face had before it was made small, and the submodule that has each now.
_MOVED = {
    **{name: "neuralgraph.architecture" for name in ("ACTIVATIONS", "LayerSpec", "ModuleSpec")},
    **{name: "neuralgraph.schema" for name in ("EDGE_FORWARD", "EDGE_RESIDUAL", "EDGE_REVERSE", "IDENTITY_NORM",
                                               "NODE_HIDDEN", "NODE_INPUT", "NODE_OUTPUT")},
    **{name: "neuralgraph.graph" for name in ("ModelState", "graph_from_params", "read_params", "graph_archs",
                                              "num_graphs")},
    **{name: "neuralgraph.symmetry" for name in ("HiddenPermutation", "apply_permutation",
                                                 "random_hidden_permutation")},
    # moved and renamed to explain themselves
    "pad_taps": "neuralgraph.graph:pad_edge_features", "group_by_layout": "neuralgraph.graph:group_graphs",
    "stacked_by_layout": "neuralgraph.graph:batch_to_stacked_groups", "graph_index": "neuralgraph.schema:batch_vector",
    "state_dict_by_order": "neuralgraph.interop:rename_state_dict",
    "to_graph_by_order": "neuralgraph.interop:from_state_dict",
}


def __getattr__(name: str):
    """The lazy names of the face, every submodule (``ng.inr``, ``ng.inference``, ...), and the names that
    moved to submodules (with a ``DeprecationWarning``)."""
    import importlib
    import importlib.util

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _MOVED:
        from .deprecation import forward_moved

        return forward_moved(__name__, _MOVED)(name)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Architecture", "mlp_architecture", "Residual", "Sine", "Offset", "Reorder",
    "NeuralGraph", "to_graph", "batch_models", "stacked_to_batch", "from_weights_biases", "to_weights_biases",
    "to_model", "to_models", "batch_to_stacked", "permute_hidden", "draw", "INRDataset", "save", "load",
    "predict", "embed",
]
