"""Bad-input cases: the processors (run by test_bad_input.py; see bad_input.py for the row format)."""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch, Data

import neuralgraph as ng
from neuralgraph.graph import read_params
from bad_input import Case
from dws_equiv import DWSLayer, DWSNet, DWSReadout
from dws_equiv.ng import NGGNN, NGTransformer


def _mlp(*widths: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        mods += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*mods[:-1])


def _batch(*models: nn.Module) -> Batch:
    return ng.batch_models(list(models))


def _empty_batch() -> Batch:
    """A batch of 0 networks, as ``INRDataset.batch([])`` / ``stacked_to_batch`` of empty stacks give."""
    arch = ng.mlp_architecture([2, 4, 1])
    return ng.stacked_to_batch([torch.zeros(0, 4, 2), torch.zeros(0, 1, 4)], [torch.zeros(0, 4), torch.zeros(0, 1)],
                               arch)


def _int_weights() -> Data:
    g = ng.to_graph(_mlp(2, 4, 1))
    g.x, g.edge_attr = g.x.long(), g.edge_attr.long()
    return g


def _without(key: str) -> Data:
    g = ng.to_graph(_mlp(2, 4, 1))
    del g[key]
    return g


def _no_edge_columns() -> Data:
    g = ng.to_graph(_mlp(2, 4, 1))
    g.edge_attr = g.edge_attr[:, :0]
    return g


PROCESSORS = {"DWSNet": lambda: DWSNet(3, hidden=8, num_layers=1),
              "NGGNN": lambda: NGGNN(3, hidden=8, num_layers=1),
              "NGTransformer": lambda: NGTransformer(3, hidden=8, num_layers=1)}

CASES: list[Case] = [
    # inputs every processor refuses alike
    *[Case(f"{name}: empty batch", lambda ctx, make=make: make()(_empty_batch()), ValueError, "empty batch (0 graphs)")
      for name, make in PROCESSORS.items()],
    *[Case(f"{name}: a tensor instead of a graph", lambda ctx, make=make: make()(torch.zeros(4, 1)), ValueError,
           "takes a neural graph or a PyG Batch") for name, make in PROCESSORS.items()],
    *[Case(f"{name}: list of graphs instead of a Batch",
           lambda ctx, make=make: make()([ng.to_graph(_mlp(2, 4, 1))]), ValueError, "got list")
      for name, make in PROCESSORS.items()],
    *[Case(f"{name}: plain Data without neural-graph fields",
           lambda ctx, make=make: make()(Data(x=torch.zeros(3, 1), edge_index=torch.zeros(2, 0, dtype=torch.long))),
           ValueError, "lacks the neural-graph field(s)") for name, make in PROCESSORS.items()],
    *[Case(f"{name}: integer weights", lambda ctx, make=make: make()(_int_weights()), ValueError,
           "x must be floating point") for name, make in PROCESSORS.items()],
    Case("NGGNN: graph without arch (probe features run the network)",
         lambda ctx: NGGNN(3, hidden=8, num_layers=1)(_without("arch")), ValueError, "['arch']"),
    Case("DWSNet: graph without edge_layer", lambda ctx: DWSNet(3, hidden=8)(_without("edge_layer")), ValueError,
         "['edge_layer']"),
    *[Case(f"{name}: an empty list", lambda ctx, make=make: make()([]), ValueError,
           "got an empty list (no graphs)") for name, make in PROCESSORS.items()],
    Case("NGGNN: edge_attr with 0 columns", lambda ctx: NGGNN(3, hidden=8, num_layers=1)(_no_edge_columns()),
         ValueError, "NGGNN: edge_attr has shape [12, 0]; a neural graph's edge_attr is [E, K] with at least one"),
    Case("NGTransformer: edge_attr with 0 columns",
         lambda ctx: NGTransformer(3, hidden=8, num_layers=1)(_no_edge_columns()), ValueError,
         "NGTransformer: edge_attr has shape [12, 0]; a neural graph's edge_attr is [E, K] with at least one"),
    Case("NGGNN without probes: edge_attr with 0 columns", lambda ctx: NGGNN(3, hidden=8, num_layers=1,
                                                                           use_probes=False)(_no_edge_columns()),
         ValueError, "NGGNN: edge_attr has shape [12, 0]"),
    Case("probes: read_params of edge_attr with 0 columns", lambda ctx: read_params(
        _no_edge_columns(), _no_edge_columns().arch, torch.zeros(1, dtype=torch.long), 1), ValueError,
         "layer 1 (linear): edge_attr has 0 columns, the layer needs 1 (its kernel's weights)"),
    # graphs a processor cannot take
    Case("DWSNet: network without a hidden layer", lambda ctx: DWSNet(3, hidden=8)(_batch(_mlp(2, 4, 1), _mlp(2, 3))),
         ValueError, "graph 1 has depth 1: DWS layers need at least one hidden layer"),
    Case("DWSNet: more inputs than max_in", lambda ctx: DWSNet(3, hidden=8, max_in=1)(_batch(_mlp(2, 4, 1))),
         ValueError, "max_in=1"),
    Case("NGGNN: more inputs than max_in", lambda ctx: NGGNN(3, hidden=8, max_in=1)(_batch(_mlp(2, 4, 1))),
         ValueError, "max_in=1"),
    Case("NGGNN: more outputs than max_out", lambda ctx: NGGNN(3, hidden=8, max_out=1, use_probes=False)(
        _batch(_mlp(2, 4, 2))), ValueError, "max_out=1"),
    Case("NGGNN: deeper than max_depth", lambda ctx: NGGNN(3, hidden=8, max_depth=1, use_probes=False)(
        _batch(_mlp(2, 4, 4, 1))), ValueError, "max_depth=1"),
    Case("DWSNet: more taps than in_edge", lambda ctx: DWSNet(3, hidden=8)(ng.to_graph(_mlp(2, 4, 1), edge_dim=3)),
         ValueError, "build it with in_node=1, in_edge=3"),
    Case("DWSNet: tying='full' without parameters for the depth",
         lambda ctx: DWSNet(3, hidden=8, tying="full", depths=[2])(_batch(_mlp(2, 4, 4, 1))), ValueError, "depth 3"),
    # hyper-parameters
    Case("DWSNet: hidden=0", lambda ctx: DWSNet(3, hidden=0), ValueError, "DWSNet: hidden must be an integer >= 1"),
    Case("DWSNet: hidden=-5", lambda ctx: DWSNet(3, hidden=-5), ValueError, "hidden must be an integer >= 1, got -5"),
    Case("DWSNet: hidden=8.5", lambda ctx: DWSNet(3, hidden=8.5), ValueError, "hidden must be an integer"),
    Case("DWSNet: hidden=True", lambda ctx: DWSNet(3, hidden=True), ValueError, "hidden must be an integer"),
    Case("DWSNet: num_layers=0", lambda ctx: DWSNet(3, num_layers=0), ValueError, "num_layers must be an integer"),
    Case("DWSNet: dropout=1", lambda ctx: DWSNet(3, dropout=1.0), ValueError, "dropout must be a number in [0, 1)"),
    Case("DWSNet: out_dim=0", lambda ctx: DWSNet(0), ValueError, "out_dim >= 1"),
    Case("DWSNet: mlp_hidden=0", lambda ctx: DWSNet(3, mlp_hidden=0), ValueError, "mlp_hidden must be"),
    Case("DWSNet: head='foo'", lambda ctx: DWSNet(3, head="foo"), ValueError, "head must be"),
    Case("DWSNet: reduce='median'", lambda ctx: DWSNet(3, reduce="median"), ValueError, "reduce must be"),
    Case("DWSNet: tying='none'", lambda ctx: DWSNet(3, tying="none"), ValueError, "tying must be"),
    Case("DWSNet: edits() with an invariant head", lambda ctx: DWSNet(3, hidden=8).edits(_batch(_mlp(2, 4, 1))),
         ValueError, "edits() needs head='equivariant'"),
    Case("DWSLayer: out_channels=0", lambda ctx: DWSLayer(1, 0), ValueError, "DWSLayer: out_channels must be"),
    Case("DWSLayer: max_in=0", lambda ctx: DWSLayer(1, 4, max_in=0), ValueError, "max_in must be"),
    Case("DWSReadout: channels=0", lambda ctx: DWSReadout(0), ValueError, "DWSReadout: channels must be"),
    Case("NGGNN: hidden=0", lambda ctx: NGGNN(3, hidden=0), ValueError, "NGGNN: hidden must be an integer >= 1"),
    Case("NGTransformer: edge_hidden=0", lambda ctx: NGTransformer(3, hidden=8, edge_hidden=0), ValueError,
         "NGTransformer: edge_hidden must be an integer >= 1"),
    Case("NGGNN: out_dim=0", lambda ctx: NGGNN(0), ValueError, "NGGNN: out_dim must be"),
    Case("NGGNN: n_probes=0 with probes", lambda ctx: NGGNN(3, n_probes=0), ValueError, "n_probes must be"),
    Case("NGGNN: rff_sigma=nan", lambda ctx: NGGNN(3, rff_sigma=float("nan")), ValueError,
         "rff_sigma must be a finite number > 0"),
    Case("NGGNN: rff_features=-1", lambda ctx: NGGNN(3, rff_features=-1), ValueError, "rff_features must be"),
    Case("NGGNN: head='foo'", lambda ctx: NGGNN(3, head="foo"), ValueError, "head must be"),
    Case("NGTransformer: attn_heads=0", lambda ctx: NGTransformer(3, hidden=8, attn_heads=0), ValueError,
         "NGTransformer: attn_heads must be an integer >= 1"),
    Case("NGTransformer: hidden not divisible by attn_heads", lambda ctx: NGTransformer(3, hidden=10, attn_heads=4),
         ValueError, "hidden=10 is not divisible by attn_heads=4"),
    Case("NGTransformer: max_taps=0", lambda ctx: NGTransformer(3, max_taps=0), ValueError, "max_taps must be"),
]
