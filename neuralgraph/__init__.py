"""neuralgraph: neural networks as PyTorch Geometric graphs, and learning on them."""
from .architecture import (ACTIVATIONS, Architecture, LayerSpec, ModuleSpec, Offset, Reorder, Residual, Sine,
                           mlp_architecture)
from .graph import (
    EDGE_FORWARD,
    EDGE_RESIDUAL,
    EDGE_REVERSE,
    IDENTITY_NORM,
    NODE_HIDDEN,
    NODE_INPUT,
    NODE_OUTPUT,
    ModelState,
    NeuralGraph,
    batch_to_stacked,
    graph_from_params,
    graph_archs,
    graph_index,
    group_by_layout,
    num_graphs,
    pad_taps,
    read_params,
    stacked_by_layout,
    stacked_to_batch,
    to_graph,
    to_model,
    to_models,
)
from .io import load, save
from .interop import (batch_models, from_weights_biases, register_safe_globals, state_dict_by_order,
                      to_graph_by_order, to_weights_biases)
from .symmetry import HiddenPermutation, apply_permutation, permute_hidden, random_hidden_permutation

__version__ = "0.1.0"

register_safe_globals()   # plain torch.load(path) (weights_only=True) reads saved graphs, batches and datasets

#: Names of the face loaded when first used: inference reads datasets and checkpoints (the INR and
#: training code), which ``import neuralgraph`` (and the processors below it) need not load.
_LAZY = {"embed": ("neuralgraph.inference", "embed"), "predict": ("neuralgraph.inference", "predict")}


def __getattr__(name: str):
    """``ng.predict`` / ``ng.embed`` and every submodule (``ng.inr``, ``ng.inference``, ...), imported when first used."""
    import importlib
    import importlib.util

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ACTIVATIONS", "Architecture", "LayerSpec", "ModuleSpec", "Offset", "Reorder", "Residual", "Sine",
    "mlp_architecture",
    "EDGE_FORWARD", "EDGE_RESIDUAL", "EDGE_REVERSE", "IDENTITY_NORM", "NODE_HIDDEN", "NODE_INPUT", "NODE_OUTPUT",
    "NeuralGraph", "ModelState",
    "to_graph", "to_model", "to_models", "graph_from_params", "stacked_to_batch", "batch_to_stacked", "pad_taps",
    "read_params", "group_by_layout", "stacked_by_layout", "graph_index", "graph_archs", "num_graphs",
    "HiddenPermutation", "apply_permutation", "permute_hidden", "random_hidden_permutation",
    "batch_models", "from_weights_biases", "to_weights_biases", "state_dict_by_order", "to_graph_by_order",
    "embed", "predict", "inference", "save", "load",
]
