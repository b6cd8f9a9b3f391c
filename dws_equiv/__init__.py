"""dws_equiv: equivariant processors of neural graphs (DWS layers, NG-GNN/NG-T)."""

# --- DWS layers (issue 3) ---
from .index import DWSIndex
from .layers import DWSLayer
from .models import DWSNet
from .readout import DWSReadout
