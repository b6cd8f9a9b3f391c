"""DWS layer: completeness against the spec's dimension count, a dense einsum reference,
equivariance on heterogeneous batches, batch independence, gradients, errors."""
from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from neuralgraph.graph import pad_edge_features
from neuralgraph.schema import EDGE_FORWARD
from neuralgraph.symmetry import apply_permutation
from dense_dws_reference import DenseDWS, features_to_stacked, stacked_to_features
from dws_equiv import DWSIndex, DWSLayer
from strategies import cnns, mlps, resnets

SPEC_EXAMPLES = {(2, 3, 3, 1): 75, (2, 3, 1): 41, (1, 2, 3, 2): 90, (3, 2, 2, 2, 2): 196, (2, 3, 4, 2): 114}


def spec_dimension(widths) -> int:
    """The spec's count: sum over block pairs of prod_l f_l(X, Y)."""
    M = len(widths) - 1
    objects = [("W", m) for m in range(1, M + 1)] + [("b", m) for m in range(1, M + 1)]
    layers = lambda o: {o[1], o[1] - 1} if o[0] == "W" else {o[1]}
    total = 0
    for X, Y in itertools.product(objects, objects):
        p = 1
        for l in range(M + 1):
            k = (l in layers(X)) + (l in layers(Y))
            p *= (2 if k == 2 else 1) if 0 < l < M else widths[l] ** k
        total += p
    return total


def graph_of(widths, dtype=torch.float64):
    return ng.to_graph(ng.mlp_architecture(list(widths), "relu").build().to(dtype))


def weight_space_mask(g) -> torch.Tensor:
    """Nodes that carry a bias (all but the input layer)."""
    return g.node_layer > 0


# ---------------------------------------------------------------------------------------------
# the oracle itself: the spec's formula equals the null-space dimension of the constraints
# ---------------------------------------------------------------------------------------------

def _permutation_matrices(g, layer_perm):
    """Matrices of the action on V = (edge features, bias features) of one graph."""
    node_perm = torch.arange(g.num_nodes)
    for nodes, perm in layer_perm:
        node_perm[nodes] = nodes[perm]
    permuted, hp = apply_permutation(g, node_perm)
    bias = torch.nonzero(weight_space_mask(g)).view(-1)
    E = g.edge_attr.size(0)
    n = E + bias.numel()
    P = torch.zeros(n, n, dtype=torch.float64)
    P[torch.arange(E), hp.edge_perm] = 1
    inv_bias = {int(v): i for i, v in enumerate(bias)}
    for i, v in enumerate(bias):
        P[E + i, E + inv_bias[int(hp.node_perm[v])]] = 1
    return P


@pytest.mark.parametrize("widths", [(2, 3, 1), (2, 3, 3, 1)])
def test_spec_formula_matches_commutant_dimension(widths):
    g = graph_of(widths)
    gens = []
    for l in range(1, len(widths) - 1):
        nodes = torch.nonzero(g.node_layer == l).view(-1)
        d = nodes.numel()
        gens.append([(nodes, torch.tensor([1, 0] + list(range(2, d))))])           # a transposition
        gens.append([(nodes, torch.tensor(list(range(1, d)) + [0]))])              # a d-cycle
    rows = []
    for gen in gens:
        P = _permutation_matrices(g, gen)
        n = P.size(0)
        rows.append(torch.kron(torch.eye(n, dtype=torch.float64), P) - torch.kron(P.t().contiguous(), torch.eye(n, dtype=torch.float64)))
    A = torch.cat(rows)
    null = A.size(1) - int(torch.linalg.matrix_rank(A))
    assert null == spec_dimension(widths) == SPEC_EXAMPLES[widths]


# ---------------------------------------------------------------------------------------------
# completeness of the full mode
# ---------------------------------------------------------------------------------------------

def _linear_maps(layer: DWSLayer, widths):
    """vec of the linear map L_p (V -> V) for every scalar weight parameter p (biases off)."""
    g = graph_of(widths)
    bias_nodes = torch.nonzero(weight_space_mask(g)).view(-1)
    E = g.edge_attr.size(0)
    V = E + bias_nodes.numel()
    basis = []
    for k in range(V):             # the input basis of V, batched as V graphs
        h = g.clone()
        h.x = torch.zeros_like(h.x)
        h.edge_attr = torch.zeros_like(h.edge_attr)
        if k < E:
            h.edge_attr[k, 0] = 1
        else:
            h.x[bias_nodes[k - E], 0] = 1
        basis.append(h)
    batch = Batch.from_data_list(basis)
    idx = DWSIndex.from_batch(batch, layer.max_in, layer.max_out)
    maps = []
    params = list(layer.weights.values())
    with torch.no_grad():
        for p in params:
            p.zero_()
        for p in params:
            flat = p.view(-1)
            for i in range(flat.numel()):
                flat[i] = 1
                node, edge = layer(batch.x, batch.edge_attr, idx)
                flat[i] = 0
                out = torch.cat([edge.view(V, E), node.view(V, -1)[:, weight_space_mask(g)]], 1)
                maps.append(out.reshape(-1))
    return torch.stack(maps)


@pytest.mark.parametrize("widths", sorted(SPEC_EXAMPLES))
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_full_mode_is_complete(widths, reduce):
    M = len(widths) - 1
    layer = DWSLayer(1, 1, reduce=reduce, tying="full", depths=[M], max_in=widths[0], max_out=widths[-1],
                     pair_mixing="full", bias=False).double()
    expected = spec_dimension(widths)
    assert expected == SPEC_EXAMPLES[widths]
    assert layer.weight_parameter_count() == expected
    maps = _linear_maps(layer, widths)
    assert int(torch.linalg.matrix_rank(maps)) == expected


def test_relation_mode_is_not_complete_but_large():
    """Tying by relation shares parameters across layer pairs: fewer maps, still many."""
    widths = (3, 2, 2, 2, 2)
    layer = DWSLayer(1, 1, reduce="sum", tying="relation", max_in=3, max_out=2, pair_mixing="full", bias=False).double()
    rank = int(torch.linalg.matrix_rank(_linear_maps(layer, widths)))
    assert 0.5 * spec_dimension(widths) < rank < spec_dimension(widths)


def test_every_full_mode_map_is_equivariant():
    """Each basis map commutes with a hidden permutation (completeness counts only equivariant maps)."""
    widths = (2, 3, 3, 2)
    layer = DWSLayer(1, 1, reduce="sum", tying="full", depths=[3], max_in=2, max_out=2, pair_mixing="full",
                     bias=False).double()
    g = graph_of(widths)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(g.num_nodes, 1, dtype=torch.float64, generator=gen)
    e = torch.randn(g.edge_attr.size(0), 1, dtype=torch.float64, generator=gen)
    g2, perm = ng.permute_hidden(g, torch.Generator().manual_seed(5))
    assert not torch.equal(perm.node_perm, torch.arange(g.num_nodes))
    with torch.no_grad():
        for p in layer.weights.values():
            p.zero_()
        for p in layer.weights.values():
            for i in range(p.numel()):
                p.view(-1)[i] = 1
                n, eo = layer(x, e, g)
                n2, eo2 = layer(x[perm.node_perm], e[perm.edge_perm], g2)
                p.view(-1)[i] = 0
                torch.testing.assert_close(n2, n[perm.node_perm], rtol=0, atol=1e-12)
                torch.testing.assert_close(eo2, eo[perm.edge_perm], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# dense reference
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("widths", [(2, 4, 3, 2), (2, 5, 5, 1), (3, 4, 2), (1, 3, 2, 4, 2)])
@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_matches_dense_reference(widths, reduce):
    M, B, C, Co = len(widths) - 1, 4, 3, 2
    gen = torch.Generator().manual_seed(sum(widths))
    torch.manual_seed(sum(widths))
    layer = DWSLayer(C, Co, reduce=reduce, tying="full", depths=[M], max_in=widths[0] + 2, max_out=widths[-1] + 1,
                     pair_mixing="full")
    with torch.no_grad():
        for p in layer.biases.values():
            p.normal_()
    ref = DenseDWS(widths, C, Co, reduce, dtype=torch.float32)
    ref.copy_from_layer(layer)
    W = [torch.randn(B, widths[m], widths[m - 1], C, generator=gen) for m in range(1, M + 1)]
    b = [torch.randn(B, widths[m], C, generator=gen) for m in range(1, M + 1)]
    batch = ng.stacked_to_batch([w[..., 0] for w in W], [v[..., 0] for v in b], ng.mlp_architecture(list(widths), "relu"))
    x, e = stacked_to_features(W, b)
    node, edge = layer(x, e, batch)
    Wo, bo = features_to_stacked(node, edge, widths, B)
    Wr, br = ref(W, b)
    for got, want in zip(Wo + bo, Wr + br):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # and the reference is not trivially zero / the layer not trivially the reference
    assert sum(float(w.abs().sum()) for w in Wr) > 1.0
    assert torch.equal(node.view(B, -1, Co)[:, : widths[0]], torch.zeros(B, widths[0], Co))


# ---------------------------------------------------------------------------------------------
# equivariance, batch independence, gradients on heterogeneous batches
# ---------------------------------------------------------------------------------------------

deep_models = st.one_of(mlps(max_layers=6, max_width=6), cnns(max_convs=2, max_width=5), resnets(max_blocks=2))


def _hetero_batch(models, edge_dim=9):
    graphs = [pad_edge_features(ng.to_graph(m.double()), edge_dim) for m in models]
    graphs = [g for g in graphs if g.num_layers >= 2]
    return Batch.from_data_list(graphs) if graphs else None


def _random_features(batch, C, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch.num_nodes, C, dtype=torch.float64, generator=gen)
    e = torch.randn(batch.num_edges, C, dtype=torch.float64, generator=gen)
    return x, e


def _layer(tying, reduce, pair_mixing, C=3, Co=4, seed=0):
    torch.manual_seed(seed)
    layer = DWSLayer(C, Co, reduce=reduce, tying=tying, max_depth=8, max_in=16, max_out=16, pair_mixing=pair_mixing).double()
    with torch.no_grad():
        for p in layer.biases.values():
            p.normal_()
    return layer


@settings(max_examples=12, deadline=None)
@given(st.lists(deep_models, min_size=2, max_size=5), st.integers(0, 10_000),
       st.sampled_from(["relation", "full"]), st.sampled_from(["sum", "mean", "max"]),
       st.sampled_from(["full", "factorized"]))
def test_equivariance_on_heterogeneous_batches(models, seed, tying, reduce, pair_mixing):
    batch = _hetero_batch(models)
    if batch is None:
        return
    layer = _layer(tying, reduce, pair_mixing, seed=seed)
    x, e = _random_features(batch, 3, seed)
    node, edge = layer(x, e, batch)
    permuted, perm = ng.permute_hidden(batch, torch.Generator().manual_seed(seed + 1))
    node2, edge2 = layer(x[perm.node_perm], e[perm.edge_perm], permuted)
    torch.testing.assert_close(node2, node[perm.node_perm], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(edge2, edge[perm.edge_perm], rtol=1e-9, atol=1e-9)
    # outputs outside weight space are zero: input neurons, residual edges
    assert torch.equal(node[batch.node_layer == 0], torch.zeros_like(node[batch.node_layer == 0]))
    skip = batch.edge_type != EDGE_FORWARD
    assert torch.equal(edge[skip], torch.zeros_like(edge[skip]))


@pytest.mark.parametrize("tying", ["relation", "full"])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_equivariance_many_seeds_float32(tying, reduce):
    """float32, 1e-5: the production dtype, several seeds, widths 1..7 and depths 2..6 in one batch."""
    archs = [[2, 5, 4, 1], [3, 4, 2], [2, 3, 4, 5, 2], [1, 6, 2, 3, 3, 2, 1], [2, 1, 2], [4, 7, 7, 7, 3]]
    batch = Batch.from_data_list([graph_of(w, torch.float32) for w in archs])
    layer = _layer(tying, reduce, "factorized").float()
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch.num_nodes, 3, generator=gen)
        e = torch.randn(batch.num_edges, 3, generator=gen)
        node, edge = layer(x, e, batch)
        permuted, perm = ng.permute_hidden(batch, gen)
        node2, edge2 = layer(x[perm.node_perm], e[perm.edge_perm], permuted)
        torch.testing.assert_close(node2, node[perm.node_perm], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(edge2, edge[perm.edge_perm], rtol=1e-5, atol=1e-5)


@settings(max_examples=8, deadline=None)
@given(st.lists(deep_models, min_size=2, max_size=5), st.integers(0, 10_000),
       st.sampled_from(["relation", "full"]), st.sampled_from(["sum", "mean", "max"]))
def test_batch_independence(models, seed, tying, reduce):
    batch = _hetero_batch(models)
    if batch is None:
        return
    layer = _layer(tying, reduce, "factorized", seed=seed)
    x, e = _random_features(batch, 3, seed)
    node, edge = layer(x, e, batch)
    edge_graph = batch.batch[batch.edge_index[1]]
    for i in range(batch.num_graphs):
        g = batch.get_example(i)
        nsel, esel = batch.batch == i, edge_graph == i
        n_i, e_i = layer(x[nsel], e[esel], g)
        torch.testing.assert_close(n_i, node[nsel], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(e_i, edge[esel], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("tying", ["relation", "full"])
def test_gradients_reach_every_parameter(tying):
    archs = [[2, 5, 4, 1], [3, 4, 2], [2, 3, 4, 5, 2], [1, 6, 2, 3, 3, 2, 1], [2, 3, 3, 3, 3, 2]]
    batch = Batch.from_data_list([graph_of(w) for w in archs])
    layer = DWSLayer(3, 4, tying=tying, max_depth=6, max_in=4, max_out=3).double()
    x, e = _random_features(batch, 3, 0)
    node, edge = layer(x, e, batch)
    (node.pow(2).sum() + edge.pow(2).sum()).backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_relation_mode_serves_any_depth_full_mode_refuses_unknown():
    deep = graph_of([2] + [3] * 10 + [1])       # depth 11 > max_depth
    relation = DWSLayer(1, 2, max_depth=4)
    full = DWSLayer(1, 2, tying="full", max_depth=4)
    x, e = deep.x.float(), deep.edge_attr.float()
    node, edge = relation(x, e, deep)
    assert node.shape == (deep.num_nodes, 2) and torch.isfinite(edge).all()
    with pytest.raises(ValueError, match="depth 11"):
        full(x, e, deep)


def test_clear_errors():
    g = graph_of([70, 4, 1], torch.float32)
    with pytest.raises(ValueError, match="70 input neurons.*max_in=64"):
        DWSLayer(1, 2)(g.x, g.edge_attr, g)
    g = graph_of([2, 4, 9], torch.float32)
    with pytest.raises(ValueError, match="9 output.*max_out=8"):
        DWSLayer(1, 2, max_out=8)(g.x, g.edge_attr, g)
    linear = ng.to_graph(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="at least one hidden layer"):
        DWSLayer(1, 2)(linear.x, linear.edge_attr, linear)
    g = graph_of([2, 4, 1], torch.float32)
    with pytest.raises(ValueError, match=r"expects x \[N, 3\]"):
        DWSLayer(3, 2)(g.x, g.edge_attr, g)
    with pytest.raises(ValueError, match="reduce"):
        DWSLayer(1, 1, reduce="median")
    with pytest.raises(ValueError, match="tying"):
        DWSLayer(1, 1, tying="absolute")


def test_index_is_shared_between_layers_and_matches_direct_call():
    batch = Batch.from_data_list([graph_of(w, torch.float32) for w in ([2, 5, 4, 1], [3, 4, 2])])
    idx = DWSIndex.from_batch(batch, 64, 64)
    layer = DWSLayer(1, 5)
    a = layer(batch.x, batch.edge_attr, idx)
    b = layer(batch.x, batch.edge_attr, batch)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_relation_tying_has_every_parameter_by_depth_five():
    """ALL_RELATIONS_DEPTH: deeper configurations add no parameter, so any depth is served."""
    from dws_equiv.layers import ALL_RELATIONS_DEPTH

    names = set(DWSLayer(2, 3, max_depth=2).state_dict())
    assert names == set(DWSLayer(2, 3, max_depth=12).state_dict())
    import dws_equiv.layers as layers

    saved = layers.ALL_RELATIONS_DEPTH
    try:
        layers.ALL_RELATIONS_DEPTH = ALL_RELATIONS_DEPTH - 1
        assert set(DWSLayer(2, 3, max_depth=2).state_dict()) < names     # one less is not enough
    finally:
        layers.ALL_RELATIONS_DEPTH = saved
