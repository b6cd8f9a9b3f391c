"""The symmetry action: hidden permutations keep the function and act consistently on batches."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from neuralgraph.graph import pad_edge_features
from neuralgraph.schema import NODE_HIDDEN
from strategies import cnns, mlps, model_input, resnets


@settings(max_examples=40, deadline=None)
@given(st.one_of(mlps(), mlps(norms=True), cnns(), resnets()), st.integers(0, 2**31 - 1))
def test_permuted_model_computes_same_function(model, seed):
    model = model.double().eval()
    graph = ng.to_graph(model)
    permuted, perm = ng.permute_hidden(graph, generator=torch.Generator().manual_seed(seed))
    rebuilt = ng.to_model(permuted).eval()
    x = model_input(model, generator=torch.Generator().manual_seed(seed)).double()
    torch.testing.assert_close(rebuilt(x), model(x), rtol=1e-9, atol=1e-9)
    # the permutation relabels nodes inside hidden layers only
    assert torch.equal(graph.node_layer[perm.node_perm], graph.node_layer)
    fixed = graph.node_type != NODE_HIDDEN
    assert torch.equal(perm.node_perm[fixed], torch.arange(graph.num_nodes)[fixed])
    assert torch.equal(permuted.x, graph.x[perm.node_perm])
    assert torch.equal(permuted.edge_attr, graph.edge_attr[perm.edge_perm])
    # structure is unchanged: the permuted graph has the canonical layout
    for key in ("edge_index", "node_layer", "node_pos", "node_type", "node_act", "edge_layer"):
        assert torch.equal(permuted[key], graph[key]), key


def test_permutation_actually_moves_hidden_neurons():
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    g = ng.to_graph(model)
    _, perm = ng.permute_hidden(g, generator=torch.Generator().manual_seed(0))
    moved = perm.node_perm != torch.arange(g.num_nodes)
    assert moved[g.node_layer == 1].any() and moved[g.node_layer == 2].any()
    assert not moved[g.node_layer == 0].any() and not moved[g.node_layer == 3].any()


@settings(max_examples=10, deadline=None)
@given(st.lists(st.one_of(mlps(max_layers=4), cnns(max_convs=2), resnets(max_blocks=2)), min_size=2, max_size=6),
       st.integers(0, 1000))
def test_batch_permutation_is_per_graph_and_preserves_functions(models, seed):
    models = [m.double() for m in models]
    batch = Batch.from_data_list([pad_edge_features(ng.to_graph(m), 9) for m in models])
    permuted, perm = ng.permute_hidden(batch, generator=torch.Generator().manual_seed(seed))
    # nodes never leave their graph or layer
    assert torch.equal(batch.batch[perm.node_perm], batch.batch)
    assert torch.equal(batch.node_layer[perm.node_perm], batch.node_layer)
    assert torch.equal(permuted.edge_index, batch.edge_index)
    for m, rebuilt in zip(models, ng.to_models(permuted)):
        rebuilt.eval()
        x = model_input(m).double()
        torch.testing.assert_close(rebuilt(x), m(x), rtol=1e-9, atol=1e-9)


def test_stacked_batch_permutation_matches_dense_permutation():
    """Permuting a stacked INR batch equals permuting each network's matrices by hand."""
    arch = ng.mlp_architecture([2, 5, 4, 1], "sine")
    gen = torch.Generator().manual_seed(3)
    B = 6
    W = [torch.randn(B, o, i, generator=gen) for i, o in zip(arch.widths[:-1], arch.widths[1:])]
    b = [torch.randn(B, o, generator=gen) for o in arch.widths[1:]]
    batch = ng.stacked_to_batch(W, b, arch)
    permuted, perm = ng.permute_hidden(batch, generator=gen)
    W2, b2 = ng.batch_to_stacked(permuted)
    n = arch.num_nodes
    for g in range(B):
        local = perm.node_perm[g * n:(g + 1) * n] - g * n
        P1 = local[2:7] - 2  # layer 1 positions
        P2 = local[7:11] - 7  # layer 2 positions
        torch.testing.assert_close(W2[0][g], W[0][g][P1])
        torch.testing.assert_close(W2[1][g], W[1][g][P2][:, P1])
        torch.testing.assert_close(W2[2][g], W[2][g][:, P2])
        torch.testing.assert_close(b2[0][g], b[0][g][P1])
        torch.testing.assert_close(b2[1][g], b[1][g][P2])
        torch.testing.assert_close(b2[2][g], b[2][g])


def test_generator_makes_permutations_reproducible():
    g = ng.to_graph(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)))
    a = ng.permute_hidden(g, generator=torch.Generator().manual_seed(5))[1].node_perm
    b = ng.permute_hidden(g, generator=torch.Generator().manual_seed(5))[1].node_perm
    c = ng.permute_hidden(g, generator=torch.Generator().manual_seed(6))[1].node_perm
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_layers_joined_by_skips_share_one_permutation():
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), ng.Residual(nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 8)),
                          ng.Residual(nn.Linear(8, 8)), nn.ReLU(), nn.Linear(8, 1))
    g = ng.to_graph(model)
    _, perm = ng.permute_hidden(g, generator=torch.Generator().manual_seed(0))
    local = lambda layer: perm.node_perm[g.node_layer == layer] - int((g.node_layer < layer).sum())
    assert not torch.equal(local(1), torch.arange(8))
    assert torch.equal(local(1), local(3)) and torch.equal(local(1), local(4))  # chain 1 -> 3 -> 4
    assert not torch.equal(local(2), local(1)[:5])  # the block's inner layer is free on its own
    # a chain that reaches the output is fixed
    tied_to_output = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), ng.Residual(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 4)))
    g2 = ng.to_graph(tied_to_output)
    for seed in range(5):
        _, p2 = ng.permute_hidden(g2, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(p2.node_perm[g2.node_layer == 1], torch.arange(2, 6))
