"""DWSNet and DWSReadout: invariance / equivariance on heterogeneous float32 batches, batch
independence, gradients, editing networks, a small real training on SIRENs of digits, errors."""
from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from dws_equiv import DWSIndex, DWSNet, DWSReadout
from neuralgraph.inr import fit_sirens
from training import adam_losses

TOL = dict(rtol=1e-5, atol=1e-5)
SEEDS = range(4)
MAX_IN = MAX_OUT = 7


def random_archs(gen: torch.Generator, n: int = 6) -> list[list[int]]:
    """``n`` MLP width lists, widths 1..7, depths 2..5 (>= 1 hidden layer); depths 2 and 5 always present."""
    depths = [2, 5] + torch.randint(2, 6, (n - 2,), generator=gen).tolist()
    return [torch.randint(1, 8, (M + 1,), generator=gen).tolist() for M in depths]


def hetero_batch(seed: int, n: int = 6) -> Batch:
    """A batch of random-weight MLP graphs of different widths and depths (float32)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    graphs = []
    for widths in random_archs(gen, n):
        g = ng.to_graph(ng.mlp_architecture(widths, "relu").build())
        g.x = g.x + 0.3 * torch.randn(g.x.shape, generator=gen) * (g.node_layer > 0).unsqueeze(-1)   # non-zero biases
        graphs.append(g)
    return Batch.from_data_list(graphs)


def make_net(seed: int, *, head: str = "invariant", tying: str = "relation", reduce: str = "mean",
             hidden: int = 8, num_layers: int = 2, **kw) -> DWSNet:
    torch.manual_seed(seed)
    if tying == "full":
        kw.setdefault("depths", [2, 3, 4, 5])
    if head == "invariant":
        kw.setdefault("out_dim", 3)
    net = DWSNet(head=head, tying=tying, reduce=reduce, hidden=hidden, num_layers=num_layers,
                 max_in=MAX_IN, max_out=MAX_OUT, **kw)
    with torch.no_grad():                       # non-trivial affine biases in every layer
        for layer in net.layers:
            for p in layer.biases.values():
                p.normal_(0, 0.5)
    return net.eval()


CONFIGS = [(t, r) for t in ("relation", "full") for r in ("mean", "sum", "max")]


# ---------------------------------------------------------------------------------------------
# invariance / equivariance
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tying,reduce", CONFIGS)
def test_invariant_head_is_invariant(tying, reduce):
    for seed in SEEDS:
        batch = hetero_batch(seed)
        net = make_net(seed, tying=tying, reduce=reduce)
        permuted, perm = ng.permute_hidden(batch, torch.Generator().manual_seed(100 + seed))
        assert not torch.equal(perm.node_perm, torch.arange(batch.num_nodes))
        with torch.no_grad():
            out, out_p = net(batch), net(permuted)
        assert out.shape == (batch.num_graphs, 3)
        torch.testing.assert_close(out_p, out, **TOL)
        # the input really changed, and the output depends on it (not a constant)
        assert not torch.equal(permuted.edge_attr, batch.edge_attr)
        assert float((out - out.mean(0)).abs().max()) > 1e-3


@pytest.mark.parametrize("reduce", ["mean", "sum", "max"])
def test_readout_is_invariant(reduce):
    C = 3
    readout = DWSReadout(C, reduce=reduce, max_in=MAX_IN, max_out=MAX_OUT)
    for seed in SEEDS:
        batch = hetero_batch(seed)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch.num_nodes, C, generator=gen)
        e = torch.randn(batch.num_edges, C, generator=gen)
        permuted, perm = ng.permute_hidden(batch, gen)
        v = readout(x, e, DWSIndex.from_batch(batch, MAX_IN, MAX_OUT))
        v_p = readout(x[perm.node_perm], e[perm.edge_perm], permuted)        # the batch itself as index
        assert v.shape == (batch.num_graphs, readout.out_features)
        torch.testing.assert_close(v_p, v, **TOL)
        # reversing graph 0's first-layer weights also reverses its inputs (not a symmetry): it is seen
        if int((batch.node_layer[batch.batch == 0] == 0).sum()) > 1:
            first = torch.nonzero((batch.batch[batch.edge_index[1]] == 0) & (batch.node_layer[batch.edge_index[1]] == 1)).view(-1)
            e_bad = e.clone()
            e_bad[first] = e[first].flip(0)
            assert not torch.allclose(readout(x, e_bad, batch)[0], v[0])


@pytest.mark.parametrize("tying,reduce", CONFIGS)
def test_equivariant_head_is_equivariant(tying, reduce):
    for seed in SEEDS:
        batch = hetero_batch(seed)
        net = make_net(seed, head="equivariant", tying=tying, reduce=reduce, edit_residual=seed % 2 == 0)
        permuted, perm = ng.permute_hidden(batch, torch.Generator().manual_seed(100 + seed))
        with torch.no_grad():
            node, edge = net.edits(batch)
            node_p, edge_p = net.edits(permuted)
        assert node.shape == batch.x.shape and edge.shape == batch.edge_attr.shape
        torch.testing.assert_close(node_p, node[perm.node_perm], **TOL)
        torch.testing.assert_close(edge_p, edge[perm.edge_perm], **TOL)
        if seed % 2:        # no residual: input neurons get zero, the rest is not trivially zero
            inputs = batch.node_layer == 0
            assert torch.equal(node[inputs], torch.zeros_like(node[inputs]))
            assert float(edge.abs().max()) > 1e-3


# ---------------------------------------------------------------------------------------------
# batch independence
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tying,reduce", [("relation", "mean"), ("relation", "max"), ("full", "sum")])
@pytest.mark.parametrize("head", ["invariant", "equivariant"])
def test_batch_independence(head, tying, reduce):
    for seed in range(2):
        batch = hetero_batch(10 + seed)
        net = make_net(seed, head=head, tying=tying, reduce=reduce)
        edge_graph = batch.batch[batch.edge_index[1]]
        with torch.no_grad():
            out = net(batch)
            for i in range(batch.num_graphs):
                alone = net(Batch.from_data_list([batch.get_example(i)]))
                if head == "invariant":
                    torch.testing.assert_close(alone, out[i: i + 1], **TOL)
                else:
                    torch.testing.assert_close(alone.x, out.x[batch.batch == i], **TOL)
                    torch.testing.assert_close(alone.edge_attr, out.edge_attr[edge_graph == i], **TOL)


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tying", ["relation", "full"])
@pytest.mark.parametrize("head", ["invariant", "equivariant"])
def test_every_parameter_gets_a_gradient(head, tying):
    # both depths 2..5 and the largest input/output widths (7) appear, so every block is used
    archs = [[7, 3, 7], [2, 4, 3, 1], [1, 5, 2, 3, 2], [3, 2, 4, 4, 3, 5], [4, 1, 6, 2]]
    torch.manual_seed(0)
    batch = Batch.from_data_list([ng.to_graph(ng.mlp_architecture(w, "relu").build()) for w in archs])
    batch.x = batch.x + 0.1 * torch.randn(batch.x.shape) * (batch.node_layer > 0).unsqueeze(-1)
    net = make_net(0, head=head, tying=tying, max_depth=5).train()
    out = net(batch)
    if head == "invariant":
        loss = nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 0, 1]))
    else:
        gen = torch.Generator().manual_seed(1)
        loss = (out.x - torch.randn(out.x.shape, generator=gen)).pow(2).sum() + \
               (out.edge_attr - torch.randn(out.edge_attr.shape, generator=gen)).pow(2).sum()
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient for {missing}"


# ---------------------------------------------------------------------------------------------
# editing networks
# ---------------------------------------------------------------------------------------------

def test_edit_rebuilds_working_models():
    batch = hetero_batch(3)
    net = make_net(0, head="equivariant", edit_residual=False)
    with torch.no_grad():
        edited = net(batch)
    models = ng.to_models(edited)
    originals = ng.to_models(batch)
    gen = torch.Generator().manual_seed(0)
    changed = 0
    for i, (m, m0) in enumerate(zip(models, originals)):
        assert isinstance(m, nn.Sequential)
        x = torch.randn(5, batch.get_example(i).arch.widths[0], generator=gen)
        y = m(x)
        assert y.shape == m0(x).shape and torch.isfinite(y).all()
        # the rebuilt model carries the edited weights
        lin = [l for l in m if isinstance(l, nn.Linear)]
        assert torch.equal(lin[0].bias, edited.x[(edited.batch == i) & (edited.node_layer == 1)].view(-1))
        changed += not torch.allclose(y, m0(x))
    assert changed == batch.num_graphs


@pytest.mark.parametrize("tying", ["relation", "full"])
def test_edit_with_zero_projections_is_identity(tying):
    batch = hetero_batch(4)
    net = make_net(0, head="equivariant", tying=tying)          # edit_residual=True by default
    with torch.no_grad():
        for p in (*net.node_proj.parameters(), *net.edge_proj.parameters()):
            p.zero_()
        edited = net(batch)
    assert torch.equal(edited.x, batch.x) and torch.equal(edited.edge_attr, batch.edge_attr)
    gen = torch.Generator().manual_seed(0)
    for i, (m, m0) in enumerate(zip(ng.to_models(edited), ng.to_models(batch))):
        x = torch.randn(6, batch.get_example(i).arch.widths[0], generator=gen)
        assert torch.equal(m(x), m0(x))


@pytest.mark.parametrize("head", ["invariant", "equivariant"])
def test_float64_graphs_run_in_the_models_dtype(head):
    """float64 networks into a float32 DWSNet are cast, as NG-GNN/NG-T do (a "mixed dtype" crash before)."""
    batch = hetero_batch(3)
    double = batch.clone()
    double.x, double.edge_attr = batch.x.double(), batch.edge_attr.double()
    net = make_net(3, head=head)
    with torch.no_grad():
        out32, out64 = net(batch), net(double)
    if head == "invariant":
        out32, out64 = (out32,), (out64,)
    else:
        out32, out64 = (out32.x, out32.edge_attr), (out64.x, out64.edge_attr)
    for a, b in zip(out32, out64):
        torch.testing.assert_close(b.float(), a, rtol=1e-6, atol=1e-6)


def test_edit_needs_equivariant_head():
    with pytest.raises(ValueError, match="equivariant"):
        make_net(0).edits(hetero_batch(0))


def test_one_contract_for_every_processor_and_edit_is_deprecated():
    """forward: logits (invariant), an edited batch (equivariant), features (no head); like NG-GNN / NG-T."""
    batch = hetero_batch(5)
    net = make_net(0, head="equivariant")
    with torch.no_grad():
        out = net(batch)
        with pytest.warns(DeprecationWarning, match="forward"):
            old = net.edit(batch)
    assert type(out) is type(batch) and out.edge_index is batch.edge_index      # shallow copy of the structure
    assert torch.equal(old.x, out.x) and torch.equal(old.edge_attr, out.edge_attr)
    assert not torch.equal(batch.x, out.x)                                      # the input is left alone
    features = make_net(0, head=None)(batch)
    assert features[0].shape == (batch.num_nodes, 8) and features[1].shape == (batch.num_edges, 8)


# ---------------------------------------------------------------------------------------------
# a small real training: classify SIRENs of digits 0 / 1 / 2 from their weights
# ---------------------------------------------------------------------------------------------

def test_training_on_siren_digits_reduces_loss():
    torch.manual_seed(0)
    digits = load_digits()
    keep = torch.from_numpy(digits.target) < 3
    images = torch.from_numpy(digits.images).float()[keep][:60] / 16.0
    labels = torch.from_numpy(digits.target)[keep][:60]
    fit = fit_sirens(images, steps=40, lr=1e-3, batch_size=60, seed=0, progress=False, workers=1)
    assert float(fit.psnr.mean()) > 12            # the INRs really fit the images
    batch = ng.stacked_to_batch(fit.weights, fit.biases, fit.arch)
    assert batch.num_graphs == 60
    net = DWSNet(out_dim=3, hidden=16, num_layers=2, max_in=2, max_out=1)
    losses = adam_losses(net, batch, labels, steps=40, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

def test_clear_errors():
    g = ng.to_graph(ng.mlp_architecture([5, 4, 1], "relu").build())
    with pytest.raises(ValueError, match="5 input neurons.*max_in=4"):
        DWSNet(3, max_in=4)(g)
    g = ng.to_graph(ng.mlp_architecture([2, 4, 3], "relu").build())
    with pytest.raises(ValueError, match="3 output neurons.*max_out=2"):
        DWSNet(3, max_out=2)(g)
    with pytest.raises(ValueError, match="3 output neurons.*max_out=2"):
        DWSNet(head="equivariant", max_out=2)(g)
    with pytest.raises(ValueError, match=r"in_node=1, in_edge=9, got x.*edge_attr \(\d+, 1\); build it with in_node=1, in_edge=1"):
        DWSNet(3, in_edge=9)(g)
    linear = ng.to_graph(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="at least one hidden layer"):
        DWSNet(3)(linear)
    mixed = Batch.from_data_list([ng.to_graph(ng.mlp_architecture([2, 3, 1], "relu").build()), linear])
    with pytest.raises(ValueError, match="graph 1 has depth 1"):
        DWSNet(3)(mixed)
    with pytest.raises(ValueError, match="depth 4"):
        DWSNet(3, tying="full", depths=[2, 3])(ng.to_graph(ng.mlp_architecture([2, 3, 3, 3, 1], "relu").build()))
    with pytest.raises(ValueError, match="out_dim"):
        DWSNet()
    with pytest.raises(ValueError, match="head"):
        DWSNet(3, head="both")
    readout = DWSReadout(4, max_in=8, max_out=8)
    with pytest.raises(ValueError, match=r"DWSReadout\(4\) got x"):
        readout(g.x, g.edge_attr, g)
    with pytest.raises(ValueError, match="reduce"):
        DWSReadout(4, reduce="median")
