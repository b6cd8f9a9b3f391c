"""neuralgraph: neural networks as PyTorch Geometric graphs, and learning on them."""
from .architecture import ACTIVATIONS, Architecture, LayerSpec, ModuleSpec, Offset, Residual, Sine, mlp_architecture
from .graph import (
    EDGE_FORWARD,
    EDGE_RESIDUAL,
    EDGE_REVERSE,
    IDENTITY_NORM,
    ModelState,
    NODE_HIDDEN,
    NODE_INPUT,
    NODE_OUTPUT,
    NeuralGraph,
    batch_to_stacked,
    graph_from_params,
    pad_taps,
    stacked_to_batch,
    to_graph,
    to_model,
    to_models,
)
from .symmetry import HiddenPermutation, apply_permutation, permute_hidden, random_hidden_permutation

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "Architecture", "LayerSpec", "ModuleSpec", "Offset", "Residual", "Sine", "mlp_architecture",
    "EDGE_FORWARD", "EDGE_RESIDUAL", "EDGE_REVERSE", "IDENTITY_NORM", "NODE_HIDDEN", "NODE_INPUT", "NODE_OUTPUT", "NeuralGraph", "ModelState",
    "batch_to_stacked", "graph_from_params", "pad_taps", "stacked_to_batch",
    "to_graph", "to_model", "to_models",
    "HiddenPermutation", "apply_permutation", "permute_hidden", "random_hidden_permutation",
]
from .interop import (DEFAULT_ACTIVATION, batch_models, from_weights_biases, register_safe_globals,
                      state_dict_by_order, to_graph_by_order)

register_safe_globals()   # plain torch.load(path) (weights_only=True) reads saved graphs, batches and datasets
__all__ += ["DEFAULT_ACTIVATION", "batch_models", "from_weights_biases", "state_dict_by_order", "to_graph_by_order"]
from . import inference
from .inference import embed, predict

__all__ += ["embed", "predict"]
