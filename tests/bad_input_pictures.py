"""Bad-input cases: pictures (visualize.draw_permutation / dataset_report, train.plots, `neuralgraph draw`).

Run by test_bad_input.py; see bad_input.py for the row format.
"""
from __future__ import annotations

import torch
from torch import nn

import neuralgraph as ng
from bad_input import Case, cli_case


def _mlp_graph():
    torch.manual_seed(0)
    return ng.to_graph(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)))


def _permutation_case(mutate):
    """draw_permutation with the permute_hidden result altered by ``mutate(graph, permuted, perm)``."""
    def call(ctx):
        from neuralgraph.visualize import draw_permutation

        graph = _mlp_graph()
        permuted, perm = ng.permute_hidden(graph, torch.Generator().manual_seed(0))
        draw_permutation(*mutate(graph, permuted, perm), ctx.tmp / "p.png")
    return call


def _plots(name):
    return getattr(__import__("neuralgraph.train.plots", fromlist=[name]), name)


def _draw(graph, **kw):
    from neuralgraph.visualize import draw

    return draw(graph, **kw)


def _two_graphs():
    from torch_geometric.data import Batch

    return Batch.from_data_list([_mlp_graph(), _mlp_graph()])


W2 = [torch.zeros(3, 4, 2), torch.zeros(3, 1, 4)]
B2 = [torch.zeros(3, 4), torch.zeros(3, 1)]

CASES: list[Case] = [
    Case("draw: a batch of 2 graphs", lambda ctx: _draw(_two_graphs()), ValueError,
         "draw: the batch holds 2 graphs; pass index= (0..1) to draw one"),
    Case("draw: index outside the batch", lambda ctx: _draw(_two_graphs(), index=2), ValueError,
         "draw: index=2 is outside the batch's 2 graphs"),
    Case("draw_permutation: perm not a HiddenPermutation", _permutation_case(lambda g, p, perm: (g, p, [0, 1])),
         ValueError, "perm must be the HiddenPermutation"),
    Case("draw_permutation: node count differs", _permutation_case(
        lambda g, p, perm: (g, p, perm._replace(node_perm=perm.node_perm[:-1]))), ValueError, "must agree"),
    Case("draw_permutation: not a permutation", _permutation_case(
        lambda g, p, perm: (g, p, perm._replace(node_perm=torch.zeros_like(perm.node_perm)))), ValueError,
         "not a permutation"),
    Case("draw_permutation: across layers", _permutation_case(
        lambda g, p, perm: (g, p, perm._replace(node_perm=perm.node_perm.flip(0)))), ValueError, "across layers"),
    Case("draw_permutation: permuted is not graph[perm]", _permutation_case(lambda g, p, perm: (g, g, perm)),
         ValueError, "permuted.x != graph.x[perm.node_perm]"),
    Case("plot_layer_histograms: not a dataset", lambda ctx: _plots("plot_layer_histograms")(42, ctx.tmp / "h.png"),
         ValueError, "need an INRDataset or (weights, biases)"),
    Case("plot_layer_histograms: networks differ", lambda ctx: _plots("plot_layer_histograms")(
        (W2, [B2[0][:2], B2[1]]), ctx.tmp / "h.png"), ValueError, "same number (> 0) of networks"),
    Case("plot_psnr_histogram: empty", lambda ctx: _plots("plot_psnr_histogram")(torch.empty(0), ctx.tmp / "p.png"),
         ValueError, "no PSNR values"),
    Case("plot_psnr_histogram: all nan", lambda ctx: _plots("plot_psnr_histogram")(
        torch.full((3,), float("nan")), ctx.tmp / "p.png"), ValueError, "no finite PSNR"),
    Case("plot_reconstructions_with_originals: upsample 0", lambda ctx: _plots(
        "plot_reconstructions_with_originals")(torch.zeros(3, 4, 4), (W2, B2), None, ctx.tmp / "r.png", upsample=0),
         ValueError, "upsample must be an int >= 1"),
    Case("plot_reconstructions_with_originals: originals 2-D", lambda ctx: _plots(
        "plot_reconstructions_with_originals")(torch.zeros(3, 4), (W2, B2), None, ctx.tmp / "r.png"),
         ValueError, "originals must be [n, H, W]"),
    Case("plot_reconstructions_with_originals: count differs", lambda ctx: _plots(
        "plot_reconstructions_with_originals")(torch.zeros(2, 4, 4), (W2, B2), None, ctx.tmp / "r.png"),
         ValueError, "2 originals for 3 reconstructions"),
    Case("plot_reconstructions_with_originals: psnr count", lambda ctx: _plots(
        "plot_reconstructions_with_originals")(torch.zeros(3, 4, 4), (W2, B2), torch.zeros(2), ctx.tmp / "r.png"),
         ValueError, "psnr has 2 values for 3"),
    Case("plot_reconstructions_with_originals: no shape", lambda ctx: _plots(
        "plot_reconstructions_with_originals")(None, (W2, B2), torch.zeros(3), ctx.tmp / "r.png"),
         ValueError, "pass originals or image_shape"),
    Case("plot_learning_curves: lr length", lambda ctx: _plots("plot_learning_curves")(
        [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0}], ctx.tmp / "l.png", lr=[0.1, 0.2]), ValueError,
         "lr has 2 values for 1 epochs"),
    Case("dataset_report: no split", lambda ctx: __import__("neuralgraph.visualize", fromlist=["dataset_report"])
         .dataset_report(ctx.tmp / "missing"), FileNotFoundError, "no INR split"),
    cli_case("cli draw: --index out of range", ["draw", "--graph-of", "{data}", "--index", "500", "--out",
                                                "{tmp}/n.png"], "--index 500 is outside"),
    cli_case("cli draw: --graph-of without --out", ["draw", "--graph-of", "{data}"], "needs --out"),
    cli_case("cli draw: --data with --permute", ["draw", "--data", "{data}", "--permute"], "does not take --permute"),
    cli_case("cli draw: missing data", ["draw", "--graph-of", "{tmp}/none", "--out", "{tmp}/n.png"],
             "no INR split"),
]
