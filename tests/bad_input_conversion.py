"""Bad-input cases: conversion (run by test_bad_input.py; see bad_input.py for the row format)."""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch, Data

import neuralgraph as ng
from neuralgraph.architecture import LayerSpec, ModuleSpec
from neuralgraph.graph import graph_archs, graph_from_params, pad_edge_features
from neuralgraph.symmetry import apply_permutation
from bad_input import Case
from dws_equiv import DWSNet
from neuralgraph.inr import INRDataset


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))


def cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))


def edited(**fields) -> ng.NeuralGraph:
    """The graph of :func:`mlp` with some fields replaced by ``fn(graph)``."""
    g = ng.to_graph(mlp())
    for key, fn in fields.items():
        g[key] = fn(g)
    return g


def stacked(B: int = 2, **over):
    """Stacked parameters of two [2, 4, 1] MLPs, with some layers replaced."""
    W = [torch.randn(B, 4, 2), torch.randn(B, 1, 4)]
    b = [torch.randn(B, 4), torch.randn(B, 1)]
    for key, value in over.items():
        (W if key[0] == "W" else b)[int(key[1])] = value
    return W, b


ARCH = ng.mlp_architecture([2, 4, 1])


class Doubling(nn.Sequential):
    def forward(self, x):
        return 2 * super().forward(x)


class HalfResidual(ng.Residual):
    def forward(self, x):
        return x + 0.5 * nn.Sequential.forward(self, x)


class NoBiasLinear(nn.Linear):
    def forward(self, x):
        return x @ self.weight.T


def _shared_linear():
    lin = nn.Linear(4, 4)
    return nn.Sequential(nn.Linear(2, 4), lin, nn.ReLU(), lin)


def _hooked(module: nn.Module) -> nn.Module:
    """``module`` whose output a forward hook doubles (as weight_norm-style hooks change what it computes)."""
    module.register_forward_hook(lambda mod, args, out: 2 * out)
    return module


def _bias_edit() -> ng.NeuralGraph:
    """The graph of an MLP whose first layer has no bias, with a hidden neuron's ``x`` set to 1 (an edit)."""
    g = ng.to_graph(nn.Sequential(nn.Linear(3, 5, bias=False), nn.Tanh(), nn.Linear(5, 2)))
    g.x = g.x.clone()
    g.x[(g.node_layer == 1).nonzero()[0]] = 1.0
    return g


def _strided_residual(**conv) -> nn.Sequential:
    """A 4-channel conv, then ``Residual(Conv2d(4, 4, 3, **conv))``."""
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), ng.Residual(nn.Conv2d(4, 4, 3, **conv)))


def _with_none():
    model = mlp()
    model.add_module("3", None)
    return model


CASES: list[Case] = [
    Case("unsupported module", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 4), nn.GroupNorm(2, 4))),
         ValueError, "model[1]: unsupported module GroupNorm"),
    # edge_dim
    Case("edge_dim not an int", lambda ctx: ng.to_graph(mlp(), edge_dim=2.5), ValueError,
         "edge_dim must be a positive integer"),
    Case("edge_dim zero", lambda ctx: ng.to_graph(mlp(), edge_dim=0), ValueError,
         "edge_dim must be a positive integer"),
    Case("edge_dim negative", lambda ctx: ng.to_graph(mlp(), edge_dim=-1), ValueError,
         "edge_dim must be a positive integer"),
    Case("edge_dim bool", lambda ctx: ng.to_graph(mlp(), edge_dim=True), ValueError,
         "edge_dim must be a positive integer"),
    Case("edge_dim below kernel", lambda ctx: ng.to_graph(cnn(), edge_dim=4), ValueError,
         "smaller than the largest kernel"),
    Case("pad_edge_features not an int", lambda ctx: pad_edge_features(ng.to_graph(mlp()), 2.5), ValueError,
         "edge_dim must be"),
    Case("batch of mixed taps", lambda ctx: Batch.from_data_list([ng.to_graph(mlp()), ng.to_graph(cnn())]),
         ValueError, "pad_edge_features"),
    Case("batch of mixed dtypes", lambda ctx: Batch.from_data_list([ng.to_graph(mlp()), ng.to_graph(mlp().double())]),
         ValueError, "dtypes torch.float32 and torch.float64"),
    # models that cannot be described faithfully
    Case("meta device", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 3, device="meta"))),
         ValueError, "model[0].weight: is on the meta device"),
    Case("lazy linear", lambda ctx: ng.to_graph(nn.Sequential(nn.LazyLinear(3))), ValueError,
         "model[0]: LazyLinear is not initialised"),
    Case("Sine nan", lambda ctx: ng.Sine(float("nan")), ValueError, "Sine w0 must be a finite number"),
    Case("Sine inf", lambda ctx: ng.Sine(float("inf")), ValueError, "Sine w0 must be a finite number"),
    Case("Sine w0 set to nan", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 2), _set(ng.Sine(), w0=float("nan")))),
         ValueError, "model[1]: Sine w0 must be a finite number"),
    Case("LeakyReLU inf", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 2), nn.LeakyReLU(float("inf")))),
         ValueError, "model[1]: LeakyReLU negative_slope must be a finite number"),
    Case("LeakyReLU nan", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 2), nn.LeakyReLU(float("nan")))),
         ValueError, "model[1]: LeakyReLU negative_slope must be a finite number"),
    Case("LeakyReLU spec nan", lambda ctx: ModuleSpec("leaky_relu", (float("nan"),)).build(), ValueError,
         "LeakyReLU negative_slope must be a finite number"),
    Case("shared Linear", lambda ctx: ng.to_graph(_shared_linear()), ValueError,
         "model[3] and model[1] are the same Linear object (tied weights)"),
    Case("shared Linear by list repetition", lambda ctx: ng.to_graph(nn.Sequential(*[nn.Linear(4, 4), nn.ReLU()] * 2)),
         ValueError, "model[2] and model[0] are the same Linear object"),
    Case("Sequential subclass forward", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 2), Doubling(nn.Linear(2, 2)))),
         ValueError, "model[1]: Doubling subclasses Sequential but overrides forward"),
    Case("Residual subclass forward", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 2), HalfResidual(nn.Linear(2, 2)))),
         ValueError, "model[1]: HalfResidual subclasses Residual but overrides forward"),
    Case("top-level subclass forward", lambda ctx: ng.to_graph(Doubling(nn.Linear(2, 2))), ValueError,
         "model: Doubling subclasses Sequential"),
    Case("Linear subclass forward", lambda ctx: ng.to_graph(nn.Sequential(NoBiasLinear(2, 2))), ValueError,
         "model[0]: NoBiasLinear subclasses Linear but overrides forward"),
    Case("forward hook", lambda ctx: ng.to_graph(nn.Sequential(_hooked(nn.Linear(2, 2)))), ValueError,
         "model[0]: Linear has forward hooks"),
    Case("None in Sequential", lambda ctx: ng.to_graph(_with_none()), ValueError, "model[3]: is None"),
    Case("mixed dtype layers", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 3).half(), nn.Linear(3, 1))),
         ValueError, "model[1].weight is float32 but model[0].weight is float16"),
    Case("norm of another dtype", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3).double())),
         ValueError, "model[1].weight is float64 but model[0].weight is float32"),
    # chains that cannot run (ranks of the tensors flowing through)
    Case("pool to Linear without Flatten", lambda ctx: ng.to_graph(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Linear(2, 1))), ValueError,
        "model[2]: Linear after global average pooling needs nn.Flatten()"),
    Case("Conv1d then Conv2d", lambda ctx: ng.to_graph(nn.Sequential(nn.Conv1d(1, 2, 3), nn.Conv2d(2, 2, 3))),
         ValueError, "model[1]: Conv2d after a Conv1d cannot run"),
    Case("Conv2d then Conv1d", lambda ctx: ng.to_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv1d(2, 2, 3))),
         ValueError, "model[1]: Conv1d after a Conv2d cannot run"),
    Case("pool of the wrong rank", lambda ctx: ng.to_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool1d(1))),
         ValueError, "model[1]: AdaptiveAvgPool1d after a Conv2d cannot run"),
    Case("pool after Linear", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 8), nn.AdaptiveAvgPool1d(1))),
         ValueError, "model[1]: global average pooling after a Linear layer"),
    Case("Flatten merging the batch", lambda ctx: ng.to_graph(nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(0), nn.Linear(2, 1))), ValueError,
        "model[2]: Flatten(start_dim=0, end_dim=-1)"),
    Case("Flatten keeping spatial dims", lambda ctx: ng.to_graph(nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(1, 2), nn.Linear(2, 1))), ValueError,
        "model[2]: Flatten(start_dim=1, end_dim=2)"),
    Case("Flatten(0) after Linear", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 3), nn.Flatten(0))),
         ValueError, "model[1]: Flatten(start_dim=0"),
    Case("BatchNorm2d after Linear", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm2d(3))),
         ValueError, "model[1]: BatchNorm2d cannot run after a Linear layer"),
    Case("BatchNorm1d after Conv2d", lambda ctx: ng.to_graph(nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm1d(3))),
         ValueError, "model[1]: BatchNorm1d cannot run after a Conv2d"),
    Case("residual block of a strided conv", lambda ctx: ng.to_graph(_strided_residual(stride=2, padding=1)),
         ValueError, "model[2]: residual block changes the spatial size (model[2][0]: Conv2d stride (2, 2))"),
    Case("residual block of an unpadded conv", lambda ctx: ng.to_graph(_strided_residual(padding=0)),
         ValueError, "model[2]: residual block changes the spatial size (model[2][0]: Conv2d"),
    Case("Architecture residual of a strided conv", lambda ctx: ng.Architecture(
        (LayerSpec("conv2d", 4, 4, (3, 3), (2, 2), (1, 1), (1, 1)),), residuals=((0, 1, 0),)), ValueError,
         "residual block (0, 1) changes the spatial size (layer 1: conv2d stride (2, 2))"),
    # sizes of an architecture
    Case("mlp_architecture width 4.7", lambda ctx: ng.mlp_architecture([2, 4.7, 1]), ValueError,
         "widths must be integers >= 1, got 4.7 at index 1"),
    Case("mlp_architecture width '4'", lambda ctx: ng.mlp_architecture([2, "4", 1]), ValueError,
         "widths must be integers >= 1, got '4' at index 1"),
    Case("LayerSpec in_features 2.5", lambda ctx: LayerSpec("linear", 2.5, 4), ValueError,
         "LayerSpec (linear): in_features must be an integer >= 1, got 2.5"),
    Case("LayerSpec kernel of 0", lambda ctx: LayerSpec("conv2d", 1, 2, (0, 3), (1, 1), (0, 0), (1, 1)),
         ValueError, "LayerSpec (conv2d): kernel_size must be a tuple of 2 integers >= 1, got (0, 3)"),
    Case("LayerSpec stride 1.5", lambda ctx: LayerSpec("conv1d", 1, 2, (3,), (1.5,), (0,), (1,)), ValueError,
         "LayerSpec (conv1d): stride must be a tuple of 1 integer >= 1, got (1.5,)"),
    Case("Architecture.from_dict width 4.7", lambda ctx: ng.Architecture.from_dict(
        {"layers": [{"kind": "linear", "in_features": 2, "out_features": 4.7}]}), ValueError,
         "out_features must be an integer >= 1, got 4.7"),
    # graph -> model on graphs that do not describe a model
    Case("to_model without arch", lambda ctx: ng.to_model(Data(x=torch.zeros(3, 1))), ValueError,
         "the graph has no arch"),
    Case("to_model edge_attr rows dropped", lambda ctx: ng.to_model(edited(edge_attr=lambda g: g.edge_attr[:-1])),
         ValueError, "edge_attr has shape [11, 1], expected [12, *]"),
    Case("to_model x rows dropped", lambda ctx: ng.to_model(edited(x=lambda g: g.x[:-1])), ValueError,
         "x has shape [6, 1], expected [7, *]"),
    Case("to_model x 1-d", lambda ctx: ng.to_model(edited(x=lambda g: g.x[:, 0])), ValueError,
         "x has shape [7], expected [7, *]"),
    Case("to_model x of another dtype", lambda ctx: ng.to_model(edited(x=lambda g: g.x.double())), ValueError,
         "x is torch.float64 but edge_attr is torch.float32"),
    Case("to_model edge_index out of range", lambda ctx: ng.to_model(edited(edge_index=lambda g: g.edge_index + 5)),
         ValueError, "edge_index has node ids outside 0..6"),
    Case("to_model duplicated edges", lambda ctx: ng.to_model(edited(edge_index=lambda g: g.edge_index[:, [0] * 8 + list(range(8, 12))])),
         ValueError, "layer 1: some (out, in) weights have no edge"),
    Case("to_model bias edit against an arch without the bias", lambda ctx: ng.to_model(_bias_edit(), _bias_edit().arch),
         ValueError, "layer 1 (linear) has no bias in arch, but the graph's x holds non-zero biases"),
    Case("to_model of a batch", lambda ctx: ng.to_model(Batch.from_data_list([ng.to_graph(mlp())] * 2)), ValueError,
         "use to_models"),
    Case("to_graph arch not an Architecture", lambda ctx: ng.to_graph(mlp(), arch=[2, 4, 1]), ValueError,
         "arch must be an Architecture"),
    # parameters -> graphs
    Case("stacked wrong number of layers", lambda ctx: ng.stacked_to_batch(*stacked()[0:1], [None], ARCH), ValueError,
         "expected 2 weight and bias tensors"),
    Case("stacked weights as one tensor", lambda ctx: ng.stacked_to_batch(torch.zeros(2, 4, 2), stacked()[1], ARCH),
         ValueError, "weights must be a list with one tensor per layer"),
    Case("stacked numpy weights", lambda ctx: ng.stacked_to_batch([w.numpy() for w in stacked()[0]], stacked()[1], ARCH),
         ValueError, "weights[0] (layer 1) must be a torch.Tensor, got ndarray"),
    Case("stacked batch sizes differ", lambda ctx: ng.stacked_to_batch(*stacked(W1=torch.randn(3, 1, 4)), ARCH),
         ValueError, "layer 2 (linear): weight has shape (3, 1, 4), expected (2, 1, 4)"),
    Case("stacked bias of another dtype", lambda ctx: ng.stacked_to_batch(*stacked(b1=torch.randn(2, 1).double()), ARCH),
         ValueError, "layer 2 (linear): bias is torch.float64 but layer 1's weight is torch.float32"),
    Case("stacked NaN", lambda ctx: ng.stacked_to_batch(*stacked(W0=torch.full((2, 4, 2), float("nan"))), ARCH),
         ValueError, "NaN or inf"),
    Case("graph_from_params batched weights", lambda ctx: graph_from_params(*stacked(), ARCH), ValueError,
         "layer 1 (linear): weight has shape (1, 2, 4, 2)"),
    Case("graph_from_params bad state", lambda ctx: graph_from_params([torch.randn(4, 2), torch.randn(1, 4)],
                                                                           [None, None], ng.mlp_architecture([2, 4, 1], bias=False),
                                                                           state="eval"),
         ValueError, "state must be a ModelState"),
    Case("graph_archs without arch", lambda ctx: graph_archs(Data(x=torch.zeros(3, 1))), ValueError,
         "graph_archs: the graph has no arch"),
    Case("graph_archs count", lambda ctx: graph_archs(_set(ng.stacked_to_batch(*stacked(), ARCH), arch=[ARCH])),
         ValueError, "graph_archs: the batch has 2 graphs but 1 architectures"),
    Case("graph_archs not an Architecture", lambda ctx: graph_archs(_set(ng.to_graph(mlp()), arch="mlp")),
         ValueError, "graph.arch must hold Architecture objects"),
    Case("batch_to_stacked mixed architectures", lambda ctx: ng.batch_to_stacked(Batch.from_data_list(
        [ng.to_graph(mlp()), ng.to_graph(nn.Sequential(nn.Linear(2, 3)))])), ValueError,
         "one set of parameter shapes"),
    Case("batch_to_stacked wrong arch", lambda ctx: ng.batch_to_stacked(ng.stacked_to_batch(*stacked(), ARCH),
                                                                        arch=ng.mlp_architecture([2, 3, 2], "tanh")),
         ValueError, "one set of parameter shapes"),
    Case("batch_to_stacked edge_attr cut", lambda ctx: ng.batch_to_stacked(_set(ng.stacked_to_batch(*stacked(), ARCH),
                                                                                edge_attr=torch.zeros(5, 1))),
         ValueError, "edge_attr has shape [5, 1], expected [24, *]"),
    Case("to_model of a standardised dataset graph",
         lambda ctx: ng.to_model(INRDataset(ctx.data / "train.pt", normalize=True)[0]), ValueError,
         "standardised parameters (it carries x_raw"),
    Case("to_models of an edit of a standardised batch",
         lambda ctx: ng.to_models(DWSNet(head="equivariant", hidden=4, num_layers=1, max_in=2, max_out=1)(
             INRDataset(ctx.data / "train.pt", normalize=True).batch([0, 1]))), ValueError,
         "rebuild from dataset.batch(indices, normalize=False)"),
    # the symmetry action
    Case("permute_hidden generator type", lambda ctx: ng.permute_hidden(ng.to_graph(mlp()), generator=0), TypeError,
         "generator must be a torch.Generator, got int"),
    Case("permute_hidden plain Data", lambda ctx: ng.permute_hidden(Data(x=torch.zeros(3, 1))), ValueError,
         "the graph has no node_layer"),
    Case("apply_permutation across layers", lambda ctx: apply_permutation(ng.to_graph(mlp()),
                                                                              torch.tensor([0, 2, 1, 3, 4, 5, 6])),
         ValueError, "node_perm moves nodes to another layer"),
    Case("apply_permutation repeated entry", lambda ctx: apply_permutation(ng.to_graph(mlp()), torch.zeros(7, dtype=torch.long)),
         ValueError, "node_perm is not a permutation"),
    Case("apply_permutation wrong length", lambda ctx: apply_permutation(ng.to_graph(mlp()), torch.arange(6)),
         ValueError, "node_perm must be an int64 tensor of shape [7]"),
]


def _set(obj, **attrs):
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj
