"""dws_equiv: equivariant processors of neural graphs.

* DWS layers (Navon et al., ICML 2023) as gathers and scatter-reductions: :class:`DWSIndex`
  (indices of one batch), :class:`DWSLayer`, :class:`DWSReadout`, :class:`DWSNet`.
* Neural-graph processors (Kofinas et al., ICLR 2024): :mod:`dws_equiv.ng` (NG-GNN, NG-T).
"""
from .index import DWSIndex
from .layers import DWSLayer
from .models import DWSNet
from .readout import DWSReadout

__all__ = ["DWSIndex", "DWSLayer", "DWSNet", "DWSReadout"]
