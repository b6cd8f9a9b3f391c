"""Neural-graph processors NG-GNN and NG-T (Kofinas et al., ICLR 2024) on ``neuralgraph`` graphs."""
from .base import NGProcessor
from .encoding import EDGE_REVERSE_RESIDUAL, FourierFeatures, NGEncoder, bidirectional
from .heads import EquivariantHead, InvariantHead
from .nggnn import NGGNN, NGGNNLayer
from .ngt import NGTLayer, NGTransformer
from .probe import ProbeFeatures, network_values

__all__ = [
    "NGGNN", "NGTransformer", "NGGNNLayer", "NGTLayer", "NGProcessor", "NGEncoder", "ProbeFeatures",
    "InvariantHead", "EquivariantHead", "FourierFeatures", "bidirectional", "network_values",
    "EDGE_REVERSE_RESIDUAL",
]
