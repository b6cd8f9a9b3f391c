"""The processors a learned optimizer reads the optimizee's neural graph with.

Each maps a batch of neural graphs whose nodes carry ``F`` features per bias (``x [N, F]``)
and whose edges carry ``F`` features per kernel tap (``edge_attr [E, K * F]``) to equivariant
node and edge embeddings ``(h [N, H], e [E, H])``:

* ``nggnn`` / ``ngt``: :class:`dws_equiv.ng.NGGNN` / :class:`dws_equiv.ng.NGTransformer` without a
  head and without probe features (probes would run the graph's features as if they were
  weights); their encoder projects the ``F`` bias features instead of one bias value.
* ``dwsnet``: :class:`dws_equiv.DWSNet` without a head, ``in_node = F``, ``in_edge = K * F``.
* ``none``: no processor (the per-parameter FF optimizer of Metz et al.).
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn
from torch_geometric.data import Data

__all__ = ["PROCESSORS", "build_processor", "embed"]

#: Processor names a learned optimizer accepts (``none``: the per-parameter FF baseline).
PROCESSORS = ("none", "nggnn", "ngt", "dwsnet")


def build_processor(name: str, *, node_features: int, edge_features: int, hidden: int, num_layers: int,
                    max_in: int, max_out: int, max_depth: int, attn_heads: int = 4,
                    avg_degree: float = 16.0) -> nn.Module | None:
    """The processor ``name`` for graphs with ``node_features`` per node and ``edge_features`` per edge.

    Args:
        name: one of :data:`PROCESSORS`.
        node_features: ``F``, features per bias.
        edge_features: ``K * F``, features per edge (every tap's).
        hidden, num_layers: width and depth of the processor.
        max_in, max_out, max_depth: the largest input width, output width and number of parametric
            layers of the optimizees it will read (sizes of its position tables).
        attn_heads: NG-T's attention heads.
        avg_degree: NG-GNN's PNA degree scaler (the mean in-degree of the optimizee's graph).

    Returns ``None`` for ``"none"``.
    """
    if name not in PROCESSORS:
        raise ValueError(f"l2o: unknown processor {name!r}; choose one of {', '.join(PROCESSORS)}")
    if name == "none":
        return None
    if name == "dwsnet":
        from dws_equiv import DWSNet

        return DWSNet(head=None, in_node=node_features, in_edge=edge_features, hidden=hidden,
                      num_layers=num_layers, max_in=max_in, max_out=max_out, max_depth=max_depth)
    from dws_equiv.ng import NGGNN, NGTransformer

    common = dict(hidden=hidden, num_layers=num_layers, head=None, use_probes=False, max_in=max_in,
                  max_out=max_out, max_depth=max_depth, max_taps=edge_features)
    proc = NGGNN(avg_degree=avg_degree, **common) if name == "nggnn" else NGTransformer(attn_heads=attn_heads, **common)
    # the encoder projects a node's F bias features, not one bias value (its edge projection
    # already reads max_taps = K * F columns)
    proc.encoder.bias_proj = nn.Linear(node_features, hidden)
    return proc


def embed(processor: nn.Module, graph: Data) -> tuple[Tensor, Tensor]:
    """Equivariant node and edge embeddings of a processor from :func:`build_processor`.

    Shapes: ``graph.x [N, F]``, ``graph.edge_attr [E, K * F]`` -> ``(h [N, H], e [E, H])``.
    """
    run: Callable = getattr(processor, "embed", None) or processor
    return run(graph)
