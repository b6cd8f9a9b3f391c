"""Model <-> graph conversion: exact round trips, layout, batching, clear errors."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

import neuralgraph as ng
from strategies import cnns, mlps, model_input, resnets


def assert_same_params(a: nn.Module, b: nn.Module) -> None:
    """Same parameters and buffers, bit for bit (BatchNorm's step counter is not a parameter)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if k.endswith("num_batches_tracked"):
            continue
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@settings(max_examples=40, deadline=None)
@given(st.one_of(mlps(), mlps(norms=True), cnns(), resnets()))
def test_round_trip_is_bit_exact(model):
    graph = ng.to_graph(model)
    rebuilt = ng.to_model(graph).eval()
    assert_same_params(model, rebuilt)
    assert str(rebuilt) == str(model)
    x = model_input(model)
    assert torch.equal(model(x), rebuilt(x))


@settings(max_examples=25, deadline=None)
@given(mlps())
def test_layout_matches_parameters(model):
    g = ng.to_graph(model)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    widths = [linears[0].in_features] + [l.out_features for l in linears]
    assert g.num_nodes == sum(widths)
    assert g.num_edges == sum(l.weight.numel() for l in linears)
    M = len(linears)
    assert torch.equal(torch.bincount(g.node_layer, minlength=M + 1), torch.tensor(widths))
    assert (g.node_type[g.node_layer == 0] == ng.NODE_INPUT).all()
    assert (g.node_type[g.node_layer == M] == ng.NODE_OUTPUT).all()
    assert (g.x[g.node_layer == 0] == 0).all()
    src, dst = g.edge_index
    assert torch.equal(g.node_layer[dst], g.edge_layer)
    assert torch.equal(g.node_layer[src] + 1, g.edge_layer)
    # edge (j in layer m-1 -> i in layer m) carries W_m[i, j]
    for m, lin in enumerate(linears, start=1):
        sel = g.edge_layer == m
        i, j = g.node_pos[dst[sel]], g.node_pos[src[sel]]
        assert torch.equal(g.edge_attr[sel, 0], lin.weight.detach()[i, j])
        if lin.bias is not None:
            assert torch.equal(g.x[g.node_layer == m, 0], lin.bias.detach())


def test_activation_ids_and_conv_taps():
    model = nn.Sequential(nn.Conv2d(3, 4, (3, 5), stride=2, padding=1), nn.GELU(), nn.Conv2d(4, 2, 1),
                          ng.Sine(30.0), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    g = ng.to_graph(model)
    assert g.edge_attr.shape == (3 * 4 + 4 * 2 + 2 * 3, 15)
    per_layer_taps = g.edge_mask.sum(1)
    assert set(per_layer_taps[g.edge_layer == 1].tolist()) == {15}
    assert set(per_layer_taps[g.edge_layer == 2].tolist()) == {1}
    assert (g.edge_attr[~g.edge_mask] == 0).all()
    assert set(g.node_act[g.node_layer == 1].tolist()) == {ng.ACTIVATIONS["gelu"]}
    assert set(g.node_act[g.node_layer == 2].tolist()) == {ng.ACTIVATIONS["sine"]}
    assert set(g.node_act[g.node_layer == 3].tolist()) == {0}
    assert g.arch.layers[0].stride == (2, 2) and g.arch.layers[0].padding == (1, 1)


def test_state_dict_with_architecture():
    arch = ng.mlp_architecture([2, 8, 8, 1], "sine", w0=30.0)
    model = arch.build()
    g = ng.to_graph(model.state_dict(), arch=arch)
    assert_same_params(model, ng.to_model(g))
    assert ng.Architecture.from_dict(arch.to_dict()) == arch
    with pytest.raises(ValueError, match="state dict does not match"):
        ng.to_graph(ng.mlp_architecture([2, 4, 1]).build().state_dict(), arch=arch)
    with pytest.raises(ValueError, match="needs arch"):
        ng.to_graph(model.state_dict())


def test_trained_model_on_real_data_round_trips():
    """A classifier trained on sklearn digits survives graph -> model with identical predictions."""
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
    acc = (model(X).argmax(1) == y).float().mean()
    assert acc > 0.9
    rebuilt = ng.to_model(ng.to_graph(model))
    assert torch.equal(rebuilt(X), model(X))


def test_edited_graph_becomes_working_model():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    g = ng.to_graph(model)
    g.edge_attr = g.edge_attr * 2
    g.x = g.x + 1
    edited = ng.to_model(g)
    assert torch.equal(edited[0].weight, model[0].weight.detach() * 2)
    assert torch.equal(edited[2].bias, model[2].bias.detach() + 1)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.one_of(mlps(max_layers=3), cnns(max_convs=2)), min_size=2, max_size=5))
def test_heterogeneous_batch_unbatches_losslessly(models):
    graphs = [ng.pad_taps(ng.to_graph(m), 9) for m in models]
    batch = Batch.from_data_list(graphs)
    assert batch.num_graphs == len(models)
    for i, (m, rebuilt) in enumerate(zip(models, ng.to_models(batch))):
        assert_same_params(m, rebuilt)
        g = batch.get_example(i)
        for key in ("x", "edge_index", "edge_attr", "node_layer", "edge_layer"):
            assert torch.equal(g[key], graphs[i][key])
    loader = DataLoader(graphs, batch_size=2)
    assert sum(b.num_graphs for b in loader) == len(models)


def test_stacked_fast_path_matches_per_graph_conversion():
    arch = ng.mlp_architecture([2, 6, 5, 1], "sine")
    gen = torch.Generator().manual_seed(0)
    B = 9
    weights = [torch.randn(B, o, i, generator=gen) for i, o in zip(arch.widths[:-1], arch.widths[1:])]
    biases = [torch.randn(B, o, generator=gen) for o in arch.widths[1:]]
    fast = ng.stacked_to_batch(weights, biases, arch)
    slow = Batch.from_data_list([
        ng.graph_from_params([w[b] for w in weights], [x[b] for x in biases], arch) for b in range(B)])
    for key in ("x", "edge_index", "edge_attr", "edge_mask", "node_layer", "node_pos", "node_type",
                "node_act", "edge_layer", "edge_type", "batch", "ptr"):
        assert torch.equal(fast[key], slow[key]), key
    for i in (0, 4, 8):
        a, b = fast.get_example(i), slow.get_example(i)
        assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
    w2, b2 = ng.batch_to_stacked(fast)
    assert all(torch.equal(a, b) for a, b in zip(weights + biases, w2 + b2))
    assert len(fast.to_data_list()) == B


def test_stacked_conv_round_trip():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(3, 2, bias=False))
    arch = ng.Architecture.from_module(model)
    B = 4
    weights = [torch.randn(B, 3, 2, 3), torch.randn(B, 2, 3)]
    biases = [torch.randn(B, 3), None]
    batch = ng.stacked_to_batch(weights, biases, arch)
    w2, b2 = ng.batch_to_stacked(batch)
    assert torch.equal(weights[0], w2[0]) and torch.equal(weights[1], w2[1]) and b2[1] is None
    m = ng.to_models(batch)[2]
    assert torch.equal(m[0].weight, weights[0][2]) and m[-1].bias is None


@pytest.mark.parametrize(
    "model, match",
    [
        (nn.Sequential(nn.Linear(3, 4), nn.GroupNorm(2, 4), nn.Linear(4, 1)), r"model\[1\].*GroupNorm"),
        (nn.Sequential(nn.Linear(3, 4), nn.MultiheadAttention(4, 1)), r"model\[1\].*MultiheadAttention"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 1)), r"model\[2\].*shape mismatch.*5.*4"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 1)), r"model\[1\].*Flatten.*pooling"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(2, 1)), r"model\[1\].*global average pooling"),
        (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), r"model\[0\].*grouped"),
        (nn.Sequential(nn.ReLU()), "no Linear or Conv"),
        (nn.Linear(2, 3), "expected a torch.nn.Sequential"),
    ],
)
def test_unsupported_models_raise_clear_errors(model, match):
    with pytest.raises(ValueError, match=match):
        ng.to_graph(model)


def test_bad_parameters_raise_clear_errors():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        model[2].weight[0, 1] = float("nan")
    with pytest.raises(ValueError, match=r"model\[2\]\.weight.*NaN"):
        ng.to_graph(model)
    half = nn.Sequential(nn.Linear(2, 3)).to(torch.float64)
    assert ng.to_graph(half).edge_attr.dtype == torch.float64
    arch = ng.mlp_architecture([2, 3, 1])
    with pytest.raises(ValueError, match=r"layer 2 \(linear\): weight has shape"):
        ng.stacked_to_batch([torch.zeros(2, 3, 2), torch.zeros(2, 2, 3)], [torch.zeros(2, 3), torch.zeros(2, 1)], arch)


def test_nested_sequential_and_custom_module_errors():
    class Custom(nn.Module):
        def forward(self, x):
            return x

    nested = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), nn.Linear(3, 1))
    rebuilt = ng.to_model(ng.to_graph(nested))
    assert all(torch.equal(a, b) for a, b in zip(nested.parameters(), rebuilt.parameters()))
    x = torch.randn(5, 2)
    assert torch.equal(nested(x), rebuilt(x))
    with pytest.raises(ValueError, match=r"model\[0\]\[1\].*Custom"):
        ng.to_graph(nn.Sequential(nn.Sequential(nn.Linear(2, 3), Custom())))


def test_normalisation_layers_become_node_features():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 2))
    model.train()
    model(torch.randn(16, 1, 8, 8))  # real running statistics
    model.eval()
    g = ng.to_graph(model)
    assert g.node_norm.shape == (g.num_nodes, 4)
    bn = model[1]
    rows = g.node_norm[g.node_layer == 1]
    for k, t in enumerate((bn.weight, bn.bias, bn.running_mean, bn.running_var)):
        assert torch.equal(rows[:, k], t.detach())
    ln_rows = g.node_norm[g.node_layer == 2]
    assert torch.equal(ln_rows[:, 0], model[6].weight.detach()) and (ln_rows[:, 2:] == torch.tensor([0.0, 1.0])).all()
    identity = torch.tensor(ng.IDENTITY_NORM)
    assert (g.node_norm[g.node_layer == 0] == identity).all() and (g.node_norm[g.node_layer == 3] == identity).all()
    rebuilt = ng.to_model(g).eval()
    assert_same_params(model, rebuilt)
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(rebuilt(x), model(x))
    with pytest.raises(ValueError, match=r"model\[2\].*normalises 5 features.*3 outputs"):
        ng.to_graph(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.BatchNorm1d(5)))


def test_residual_blocks_become_skip_edges():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), ng.Residual(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 6)),
                          nn.ReLU(), nn.Linear(6, 2))
    g = ng.to_graph(model)
    skip = g.edge_type == ng.EDGE_RESIDUAL
    assert int(skip.sum()) == 6 and g.num_edges == 3 * 6 + 6 * 4 + 4 * 6 + 6 * 2 + 6
    src, dst = g.edge_index[:, skip]
    assert (g.node_layer[src] == 1).all() and (g.node_layer[dst] == 3).all()
    assert torch.equal(g.node_pos[src], g.node_pos[dst])
    assert (g.edge_attr[skip, 0] == 1).all() and (g.edge_layer[skip] == 3).all()
    assert skip[-6:].all(), "residual edges come after the weight edges"
    assert g.arch.residuals == ((1, 3, 0),)
    assert ng.Architecture.from_dict(g.arch.to_dict()) == g.arch


@pytest.mark.parametrize(
    "model, match",
    [
        (nn.Sequential(nn.Linear(2, 3), ng.Residual(nn.Linear(3, 4))), r"model\[1\].*3 to 4 features"),
        (nn.Sequential(nn.Linear(2, 3), ng.Residual(nn.ReLU(), nn.Linear(3, 3))), r"model\[1\]\[0\].*must start"),
        (nn.Sequential(nn.Linear(2, 3), ng.Residual(nn.Linear(3, 3), ng.Residual(nn.Linear(3, 3)))),
         r"model\[1\]\[1\].*nested"),
        (nn.Sequential(nn.Conv2d(1, 3, 1), ng.Residual(nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d(1))),
         r"model\[1\]\[1\].*pooling"),
    ],
)
def test_bad_residual_blocks_raise_clear_errors(model, match):
    with pytest.raises(ValueError, match=match):
        ng.to_graph(model)


def test_atomic_save_gives_normal_permissions_and_never_half_writes(tmp_path):
    import os

    from neuralgraph.io import atomic_save

    path = tmp_path / "data.pt"
    atomic_save({"a": torch.arange(3)}, path)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert torch.equal(torch.load(path)["a"], torch.arange(3))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unpicklable()}, path)
    assert torch.equal(torch.load(path)["a"], torch.arange(3))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["data.pt"]  # no temporary left behind
