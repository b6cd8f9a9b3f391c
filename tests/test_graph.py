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
from neuralgraph.architecture import ACTIVATIONS, LayerSpec
from neuralgraph.graph import graph_from_params, pad_edge_features
from neuralgraph.schema import EDGE_RESIDUAL, IDENTITY_NORM, NODE_INPUT, NODE_OUTPUT
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
    rebuilt = ng.to_model(graph)
    assert_same_params(model, rebuilt)
    assert str(rebuilt) == str(model)
    leaves = lambda m: [(type(leaf), leaf.training) for _, leaf in ng.architecture.leaf_modules(m)]
    assert rebuilt.training == model.training and leaves(rebuilt) == leaves(model)
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
    assert (g.node_type[g.node_layer == 0] == NODE_INPUT).all()
    assert (g.node_type[g.node_layer == M] == NODE_OUTPUT).all()
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
    assert set(g.node_act[g.node_layer == 1].tolist()) == {ACTIVATIONS["gelu"]}
    assert set(g.node_act[g.node_layer == 2].tolist()) == {ACTIVATIONS["sine"]}
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
    graphs = [pad_edge_features(ng.to_graph(m), 9) for m in models]
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
        graph_from_params([w[b] for w in weights], [x[b] for x in biases], arch) for b in range(B)])
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
    identity = torch.tensor(IDENTITY_NORM)
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
    skip = g.edge_type == EDGE_RESIDUAL
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


# ----------------------------------------------------------------------------
# silent wrong results (issue #9): each of these converted to a different network before
# ----------------------------------------------------------------------------

def _same_function(model: nn.Module, rebuilt: nn.Module, x: torch.Tensor) -> None:
    assert torch.equal(model(x), rebuilt(x))


def test_module_used_twice_is_kept_at_every_position():
    torch.manual_seed(0)
    act = nn.Tanh()
    shared_act = nn.Sequential(nn.Linear(2, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 1))
    repeated = nn.Sequential(nn.Linear(8, 8), *[nn.ReLU(), nn.Linear(8, 8)] * 1, *[nn.Sigmoid()] * 3)
    for model in (shared_act, repeated):
        rebuilt = ng.to_model(ng.to_graph(model))
        assert str(rebuilt) == str(model)
        _same_function(model, rebuilt, torch.randn(5, model[0].in_features))


def test_shared_parametric_layer_is_refused_naming_both_positions():
    lin = nn.Linear(8, 8)
    with pytest.raises(ValueError, match=r"model\[2\].*model\[0\].*same Linear"):
        ng.to_graph(nn.Sequential(lin, nn.ReLU(), lin))
    with pytest.raises(ValueError, match=r"model\[2\].*model\[0\].*same Linear"):
        ng.to_graph(nn.Sequential(*[nn.Linear(8, 8), nn.ReLU()] * 3))
    bn = nn.BatchNorm1d(8)
    with pytest.raises(ValueError, match=r"model\[3\].*model\[1\].*same BatchNorm1d"):
        ng.to_graph(nn.Sequential(nn.Linear(8, 8), bn, nn.Linear(8, 8), bn))


def test_subclasses_with_their_own_forward_are_refused():
    class Doubling(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    class ScaledResidual(ng.Residual):
        def forward(self, x):
            return x + 0.5 * nn.Sequential.forward(self, x)

    class Plain(nn.Sequential):
        pass

    class BiasFreeLinear(nn.Linear):
        def forward(self, x):
            return x @ self.weight.T

    with pytest.raises(ValueError, match=r"model\[1\].*Doubling.*forward"):
        ng.to_graph(nn.Sequential(nn.Linear(2, 3), Doubling(nn.Linear(3, 3))))
    with pytest.raises(ValueError, match=r"model\[1\].*ScaledResidual.*forward"):
        ng.to_graph(nn.Sequential(nn.Linear(2, 3), ScaledResidual(nn.Linear(3, 3))))
    with pytest.raises(ValueError, match=r"model.*Doubling.*forward"):
        ng.to_graph(Doubling(nn.Linear(2, 3)))
    with pytest.raises(ValueError, match=r"model\[0\].*BiasFreeLinear.*forward"):
        ng.to_graph(nn.Sequential(BiasFreeLinear(2, 3)))
    model = Plain(nn.Linear(2, 3), nn.ReLU(), Plain(nn.Linear(3, 1)))
    _same_function(model, ng.to_model(ng.to_graph(model)), torch.randn(4, 2))


def _trained_bn_dropout_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6, momentum=None), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(6, 2))
    for _ in range(3):
        model(torch.randn(16, 3))  # real running statistics, num_batches_tracked = 3
    return model


def test_round_trip_keeps_eval_mode_and_running_statistics():
    model = _trained_bn_dropout_model().eval()
    rebuilt = ng.to_model(ng.to_graph(model))
    assert not rebuilt.training and not any(m.training for m in rebuilt.modules())
    before = {k: v.clone() for k, v in rebuilt.state_dict().items()}
    x = torch.randn(8, 3)
    _same_function(model, rebuilt, x)
    after = rebuilt.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "calling the rebuilt model changed its state"
    assert int(rebuilt[1].num_batches_tracked) == 3


def test_round_trip_keeps_train_mode_and_batch_counter():
    model = _trained_bn_dropout_model().train()
    rebuilt = ng.to_model(ng.to_graph(model))
    assert rebuilt.training and int(rebuilt[1].num_batches_tracked) == 3
    x = torch.randn(8, 3)
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)
    assert torch.equal(rebuilt(x), out)  # same dropout mask, same batch statistics
    # momentum=None averages with 1 / num_batches_tracked: the updated statistics agree too
    assert torch.equal(rebuilt[1].running_mean, model[1].running_mean)
    # a module kept in another mode than the model (BatchNorm frozen while training) keeps it
    model[1].eval()
    rebuilt = ng.to_model(ng.to_graph(model))
    assert rebuilt.training and not rebuilt[1].training


def test_mode_survives_batching_permutation_and_unbatching():
    evald = _trained_bn_dropout_model().eval()
    trained = _trained_bn_dropout_model().train()
    batch = Batch.from_data_list([ng.to_graph(evald), ng.to_graph(trained)])
    permuted, _ = ng.permute_hidden(batch, generator=torch.Generator().manual_seed(0))
    a, b = ng.to_models(permuted)
    assert not a.training and b.training


def test_graphs_from_parameters_default_to_eval_mode():
    arch = ng.Architecture.from_module(_trained_bn_dropout_model())
    model = arch.build()  # fresh modules are in train mode
    g = ng.to_graph(model.state_dict(), arch=arch)
    assert not ng.to_model(g).training
    W = [torch.randn(2, 6, 3), torch.randn(2, 2, 6)]
    b = [torch.randn(2, 6), torch.randn(2, 2)]
    norms = [torch.rand(2, 6, 4) + 0.5, None]
    batch = ng.stacked_to_batch(W, b, arch, norms=norms)
    assert not any(m.training for m in ng.to_models(batch))
    assert not ng.to_model(graph_from_params([w[0] for w in W], [x[0] for x in b], arch,
                                                norms=[norms[0][0], None])).training


def test_mixed_dtype_layers_are_refused_not_cast():
    model = nn.Sequential(nn.Linear(2, 3).half(), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"model\[2\]\.weight.*float32.*float16.*\.float\(\)"):
        ng.to_graph(model)
    norm = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3).double(), nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"model\[1\]\.weight.*float64.*float32"):
        ng.to_graph(norm)
    with pytest.raises(ValueError, match=r"layer 2.*float64.*float32"):
        ng.stacked_to_batch([torch.zeros(1, 3, 2), torch.zeros(1, 1, 3, dtype=torch.float64)],
                            [torch.zeros(1, 3), torch.zeros(1, 1)], ng.mlp_architecture([2, 3, 1]))
    half = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)).half().eval()
    rebuilt = ng.to_model(ng.to_graph(half))
    assert all(p.dtype == torch.float16 for p in rebuilt.state_dict().values() if p.is_floating_point())


def test_to_models_of_a_single_graph():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    (rebuilt,) = ng.to_models(ng.to_graph(model))
    _same_function(model, rebuilt, torch.randn(4, 2))


def test_runnable_chains_only():
    """A chain whose tensors cannot flow (wrong ranks) is refused instead of converted."""
    ok = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(1, -1),
                       nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Flatten(), nn.Linear(2, 1)).eval()
    _same_function(ok, ng.to_model(ng.to_graph(ok)), torch.randn(3, 1, 9))
    flat_mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    _same_function(flat_mlp, ng.to_model(ng.to_graph(flat_mlp)), torch.randn(3, 1, 4, 4))


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: nn.Sequential(nn.Linear(3, 5), nn.GELU(approximate="tanh"), nn.Linear(5, 2)), (4, 3)),
        (lambda: nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5, track_running_stats=False), nn.Linear(5, 2)), (4, 3)),
        (lambda: nn.Sequential(nn.Linear(3, 5, bias=False), nn.BatchNorm1d(5, affine=False), nn.ReLU(),
                               nn.Linear(5, 2, bias=False)), (4, 3)),
        (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding="same"), nn.BatchNorm2d(3), nn.SiLU(),
                               nn.Conv2d(3, 3, (1, 3), padding="valid", dilation=2), nn.AdaptiveAvgPool2d(1),
                               nn.Flatten(1, -1), nn.Linear(3, 1)), (4, 2, 9, 9)),
        (lambda: nn.Sequential(nn.Identity(), nn.Dropout(0.3), nn.Sequential(nn.Linear(3, 5), nn.Identity(),
                                                                                nn.Sequential(nn.Dropout(0.5), nn.Tanh())),
                               nn.Linear(5, 2), nn.Dropout(0.2)), (4, 3)),
        (lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.LayerNorm(4, bias=False), nn.LeakyReLU(0.2),
                               nn.Linear(4, 2)), (4, 3, 2, 2)),
    ],
    ids=["gelu-tanh", "bn-no-stats", "no-bias-no-affine", "conv-same-dilated", "dropout-identity-nested",
         "flatten-first-layernorm"],
)
def test_round_trip_is_exact_as_a_function(make, shape, mode):
    """Unusual but supported modules rebuild into a model computing the same function, in the same mode."""
    torch.manual_seed(0)
    model = make()
    model.train()
    model(torch.randn(*shape))  # running statistics and counters move away from their defaults
    model.train(mode == "train")
    rebuilt = ng.to_model(ng.to_graph(model))
    assert str(rebuilt) == str(nn.Sequential(*[m for _, m in ng.architecture.leaf_modules(model)]))
    assert [m.training for m in rebuilt.modules() if not isinstance(m, nn.Sequential)] == \
        [m.training for _, m in ng.architecture.leaf_modules(model)]
    x = torch.randn(*shape)
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)
    assert torch.equal(rebuilt(x), out)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))


def test_a_bias_edit_on_a_bias_free_layer_is_kept():
    """Equivariant heads write every x: a bias-free layer whose neurons got biases is rebuilt with a bias."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5, bias=False), nn.Tanh(), nn.Linear(5, 2))
    graph = ng.to_graph(model)
    assert ng.to_model(graph)[0].bias is None                  # unedited (x == 0): bias-free, as the source
    edited = graph.clone()
    hidden = (edited.node_layer == 1).nonzero().view(-1)
    edited.x[hidden[1]] = 1.0
    rebuilt = ng.to_model(edited)
    assert rebuilt[0].bias is not None and torch.equal(rebuilt[0].bias, torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]))
    x = torch.randn(4, 3)
    expected = model[2](torch.tanh(x @ model[0].weight.T + rebuilt[0].bias))
    assert torch.allclose(rebuilt(x), expected) and not torch.allclose(rebuilt(x), model(x))
    (again,) = ng.to_models(Batch.from_data_list([edited]))
    assert torch.equal(again[0].bias, rebuilt[0].bias)
    with pytest.raises(ValueError, match=r"layer 1 \(linear\) has no bias in arch"):
        ng.to_model(edited, arch=graph.arch)


def test_residual_blocks_that_keep_the_spatial_size_are_accepted():
    """x + body(x) adds for every input size: stride 1 and paddings that make up for the kernels."""
    ok = [ng.Residual(nn.Conv2d(4, 4, 5, padding="same")),
          ng.Residual(nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=2)),
          ng.Residual(nn.Conv2d(4, 4, 3, padding=2, dilation=2))]
    for block in ok:
        model = nn.Sequential(nn.Conv2d(1, 4, 3), block).eval()
        x = torch.randn(2, 1, 9, 9)
        assert torch.equal(ng.to_model(ng.to_graph(model))(x), model(x))
    for bad in (ng.Residual(nn.Conv2d(4, 4, 3, stride=2, padding=1)), ng.Residual(nn.Conv2d(4, 4, 3, padding=2))):
        with pytest.raises(ValueError, match="residual block changes the spatial size"):
            ng.to_graph(nn.Sequential(nn.Conv2d(1, 4, 3), bad))


def test_architecture_sizes_are_integers_and_differences_are_named():
    import numpy as np

    arch = ng.mlp_architecture([np.int64(2), 8, 1])             # numpy integers are integers
    assert arch.widths == (2, 8, 1) and type(arch.layers[0].in_features) is int
    assert ng.Architecture.from_dict(arch.to_dict()) == arch
    with pytest.raises(ValueError, match="got 8.0 at index 1"):
        ng.mlp_architecture([2, 8.0, 1])
    with pytest.raises(ValueError, match="bias must be a bool"):
        LayerSpec("linear", 2, 3, bias=1)
    sine = ng.mlp_architecture([2, 8, 1], "sine", w0=10.0)
    assert sine.difference(arch, "here", "there") == "layer 1 post sine(10.0) here, relu() there"
    assert arch.difference(ng.mlp_architecture([2, 8, 8, 1])) == "2 layers here, 3 in the other"
    assert arch.difference(ng.mlp_architecture([2, 8, 1])) == ""
