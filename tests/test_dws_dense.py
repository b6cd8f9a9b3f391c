"""The dense path of DWSLayer / DWSReadout / DWSNet on uniform batches (one fully connected
architecture in canonical order): the same function as the gather/scatter path for every
option (outputs and gradients), taken exactly on uniform batches, invariant under hidden
permutations, and checkpoints written before it existed predict the same."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from dws_equiv import DWSIndex, DWSLayer, DWSNet, DWSReadout
from dws_equiv.uniform import UniformBlocks

ARCHS = [[2, 5, 1], [3, 4, 5, 2], [2, 3, 4, 3, 1], [1, 3, 2, 4, 3, 2], [4, 16, 12, 3]]
OPTIONS = list(itertools.product(["relation", "full"], ["mean", "sum", "max"], ["factorized", "full"]))
FIXTURE = Path(__file__).parent / "data" / "dwsnet_scatter_checkpoints.pt"


#: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def uniform_batch(widths, B: int = 3, seed: int = 0) -> Batch:
    """``B`` random MLPs of one architecture as a neural-graph batch (``stacked_to_batch``: canonical order)."""
    gen = torch.Generator().manual_seed(seed)
    W = [torch.randn(B, o, i, generator=gen) for i, o in zip(widths[:-1], widths[1:])]
    b = [torch.randn(B, o, generator=gen) for o in widths[1:]]
    return ng.stacked_to_batch(W, b, ng.mlp_architecture(list(widths), "relu"))


def mixed_batch(seed: int = 0) -> Batch:
    graphs = [uniform_batch(w, 1, seed + k).get_example(0) for k, w in enumerate([[2, 4, 1], [2, 3, 3, 1]])]
    return Batch.from_data_list(graphs)


def cnn_batch(B: int = 3) -> Batch:
    torch.manual_seed(0)
    return Batch.from_data_list([ng.to_graph(nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(5, 3))) for _ in range(B)])


def assert_rel_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5, what: str = "") -> None:
    """``|a - b| <= tol * max|b|`` (float32 results of two summation orders)."""
    scale = float(b.abs().max()) if b.numel() else 0.0
    err = float((a - b).abs().max()) if b.numel() else 0.0
    assert err <= tol * max(scale, 1e-12), f"{what}: max |diff| {err:.3g} vs scale {scale:.3g}"


def assert_grads_close(g1: dict, g2: dict, tol: float = 1e-5) -> None:
    """Same parameters got gradients; each within ``tol`` of the largest gradient entry overall
    (parameters whose true gradient is 0 get float noise in both paths)."""
    assert g1.keys() == g2.keys(), set(g1) ^ set(g2)
    scale = max(float(g.abs().max()) for g in g2.values())
    for name in g2:
        assert_rel_close(g1[name], g2[name], tol * scale / max(float(g2[name].abs().max()), 1e-30), name)


def layer_run(layer: DWSLayer, x, e, index):
    """Outputs and gradients (inputs and parameters) of a fixed random functional of the layer's outputs."""
    x, e = x.clone().requires_grad_(), e.clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    node, edge = layer(x, e, index)
    gen = torch.Generator().manual_seed(7)
    (node * torch.randn(node.shape, generator=gen)).sum().add((edge * torch.randn(edge.shape, generator=gen)).sum()
                                                               ).backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
    return node.detach(), edge.detach(), {**grads, "<x>": x.grad, "<edge_attr>": e.grad}


# ---------------------------------------------------------------------------------------------
# the layer: dense == scatter
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("widths", ARCHS)
@pytest.mark.parametrize("tying,reduce,pair_mixing", OPTIONS)
def test_layer_dense_equals_scatter(widths, tying, reduce, pair_mixing):
    batch = uniform_batch(widths)
    assert UniformBlocks.detect(batch) is not None
    gen = torch.Generator().manual_seed(1)
    C = 3
    x, e = torch.randn(batch.num_nodes, C, generator=gen), torch.randn(batch.num_edges, C, generator=gen)
    for bias in (True, False):
        torch.manual_seed(2)
        kw = dict(depths=[2, len(widths) - 1]) if tying == "full" else {}
        layer = DWSLayer(C, 4, reduce=reduce, tying=tying, pair_mixing=pair_mixing, max_in=5, max_out=4,
                         bias=bias, **kw)
        with torch.no_grad():
            for p in layer.biases.values():
                p.normal_(generator=gen)
        n1, e1, g1 = layer_run(layer, x, e, batch)                                  # dense (uniform batch)
        n2, e2, g2 = layer_run(layer, x, e, DWSIndex.from_batch(batch, 5, 4))       # forced scatter
        assert_rel_close(n1, n2, what="node")
        assert_rel_close(e1, e2, what="edge")
        assert float(e2.abs().max()) > 1e-3 and float(n2[batch.node_layer > 0].abs().min()) > 0
        assert_grads_close(g1, g2)
        assert torch.equal(n1[batch.node_layer == 0], torch.zeros_like(n1[batch.node_layer == 0]))


def test_layer_dense_float64_matches_to_rounding():
    batch = uniform_batch([3, 4, 5, 4, 2])
    layer = DWSLayer(2, 3, max_in=3, max_out=2).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch.num_nodes, 2, generator=gen, dtype=torch.float64)
    e = torch.randn(batch.num_edges, 2, generator=gen, dtype=torch.float64)
    for a, b in zip(layer(x, e, batch), layer(x, e, DWSIndex.from_batch(batch))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduce", ["mean", "sum", "max"])
def test_readout_dense_equals_scatter(reduce):
    for widths in ARCHS:
        batch = uniform_batch(widths)
        gen = torch.Generator().manual_seed(3)
        x, e = torch.randn(batch.num_nodes, 3, generator=gen), torch.randn(batch.num_edges, 3, generator=gen)
        readout = DWSReadout(3, reduce=reduce, max_in=6, max_out=5)
        v1 = readout(x, e, batch)
        v2 = readout(x, e, DWSIndex.from_batch(batch))
        assert v1.shape == (3, readout.out_features)
        assert_rel_close(v1, v2, what=str(widths))


# ---------------------------------------------------------------------------------------------
# the model: dense == scatter, for every head and option
# ---------------------------------------------------------------------------------------------

def make_net(head, tying, reduce, pair_mixing="factorized", depths=None, **kw) -> DWSNet:
    torch.manual_seed(0)
    if tying == "full":
        kw["depths"] = depths
    net = DWSNet(3 if head == "invariant" else None, head=head, hidden=6, num_layers=3, reduce=reduce, tying=tying,
                 pair_mixing=pair_mixing, max_in=5, max_out=4, **kw)
    with torch.no_grad():
        for layer in net.layers:
            for p in layer.biases.values():
                p.normal_(0, 0.5)
    return net


def net_run(net: DWSNet, batch, dense: bool):
    net.dense_path = dense
    net.zero_grad(set_to_none=True)
    out = net(batch)
    if net.head == "equivariant":
        out = torch.cat([out.x.flatten(), out.edge_attr.flatten()])
    elif net.head is None:
        out = torch.cat([out[0].flatten(), out[1].flatten()])
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    (out * weights).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("head", ["invariant", "equivariant", None])
@pytest.mark.parametrize("tying,reduce,pair_mixing", OPTIONS)
def test_dwsnet_dense_equals_scatter(head, tying, reduce, pair_mixing):
    for widths in ([2, 5, 1], [3, 4, 5, 4, 2]):
        batch = uniform_batch(widths, B=4)
        net = make_net(head, tying, reduce, pair_mixing, depths=[len(widths) - 1], norm=head != "equivariant")
        o1, g1 = net_run(net, batch, True)
        o2, g2 = net_run(net, batch, False)
        assert_rel_close(o1, o2, what=f"{widths} output")
        assert_grads_close(g1, g2)


def test_dwsnet_dense_on_cnn_batch():
    batch = cnn_batch()
    assert UniformBlocks.detect(batch) is not None
    for head in ("invariant", "equivariant"):
        net = make_net(head, "relation", "mean", in_edge=batch.edge_attr.size(1))
        o1, g1 = net_run(net, batch, True)
        o2, g2 = net_run(net, batch, False)
        assert_rel_close(o1, o2, what=head)
        assert_grads_close(g1, g2)


def test_dwsnet_training_mode_with_dropout_runs_dense():
    """Dropout draws its masks per tensor on the dense path: same distribution, not the same draws."""
    batch = uniform_batch([2, 6, 6, 1], B=4)
    net = make_net("invariant", "relation", "mean", dropout=0.5).train()
    out = net(batch)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    net.eval()
    o1, _ = net_run(net, batch, True)
    o2, _ = net_run(net, batch, False)
    assert_rel_close(o1, o2)


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_dense_path_under_bf16_autocast(reduce):
    """``--amp``: the fused mixing's backward runs in the block's dtype; both paths agree to bf16 precision."""
    batch = uniform_batch([2, 6, 6, 1], B=4)
    net = make_net("invariant", "relation", reduce)
    losses, grads = [], []
    for dense in (True, False):
        net.dense_path = dense
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = net(batch).float().pow(2).mean()
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.reshape(-1) for p in net.parameters() if p.grad is not None]))
    assert all(torch.isfinite(g).all() for g in grads)
    assert losses[0] == pytest.approx(losses[1], rel=3e-2)
    assert float((grads[0] - grads[1]).norm() / grads[1].norm()) < 0.1


# ---------------------------------------------------------------------------------------------
# which path is taken
# ---------------------------------------------------------------------------------------------

def count_paths(monkeypatch) -> dict[str, int]:
    calls = {"dense": 0, "index": 0}
    dense, build = DWSLayer.forward_dense, DWSIndex.from_batch

    def spy_dense(self, feats):
        calls["dense"] += 1
        return dense(self, feats)

    def spy_build(*args, **kwargs):
        calls["index"] += 1
        return build(*args, **kwargs)

    monkeypatch.setattr(DWSLayer, "forward_dense", spy_dense)
    monkeypatch.setattr(DWSIndex, "from_batch", staticmethod(spy_build))
    return calls


def test_dense_path_taken_on_uniform_batches_only(monkeypatch):
    calls = count_paths(monkeypatch)
    net = make_net("invariant", "relation", "mean")
    net(uniform_batch([2, 5, 4, 1]))
    assert calls == {"dense": 3, "index": 0}                      # 3 layers, no index built
    net(mixed_batch())
    assert calls == {"dense": 3, "index": 1}                      # mixed: one index, shared by all layers
    net.dense_path = False
    net(uniform_batch([2, 5, 4, 1]))
    assert calls == {"dense": 3, "index": 2}
    layer = DWSLayer(1, 2, max_in=5, max_out=4)
    batch = uniform_batch([2, 3, 1])
    layer(batch.x, batch.edge_attr, batch)
    assert calls == {"dense": 4, "index": 2}
    layer(batch.x, batch.edge_attr, DWSIndex.from_batch(batch))    # an explicit index: scatter
    assert calls == {"dense": 4, "index": 3}


def test_batches_that_are_not_uniform_take_the_scatter_path(monkeypatch):
    torch.manual_seed(0)
    resnet = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), ng.Residual(nn.Linear(4, 4)), nn.ReLU(), nn.Linear(4, 1))
    residual = Batch.from_data_list([ng.to_graph(resnet)] * 2)          # one architecture, but skip edges
    calls = count_paths(monkeypatch)
    net = make_net("invariant", "relation", "mean")
    for b in (mixed_batch(), residual):
        assert UniformBlocks.detect(b) is None
        net(b)
    assert calls == {"dense": 0, "index": 2}


# ---------------------------------------------------------------------------------------------
# symmetry and errors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tying,reduce", [("relation", "mean"), ("relation", "max"), ("full", "sum")])
def test_dense_dwsnet_is_invariant_and_equivariant(tying, reduce):
    batch = uniform_batch([2, 8, 7, 6, 1], B=5)
    permuted, perm = ng.permute_hidden(batch, torch.Generator().manual_seed(11))
    assert UniformBlocks.detect(permuted) is not None                  # both take the dense path
    assert not torch.equal(permuted.edge_attr, batch.edge_attr)
    net = make_net("invariant", tying, reduce, depths=[4]).eval()
    with torch.no_grad():
        out, out_p = net(batch), net(permuted)
    assert float((out - out.mean(0)).abs().max()) > 1e-3
    torch.testing.assert_close(out_p, out, rtol=1e-5, atol=1e-5)
    net = make_net("equivariant", tying, reduce, depths=[4], edit_residual=False).eval()
    with torch.no_grad():
        (node, edge), (node_p, edge_p) = net.edits(batch), net.edits(permuted)
    torch.testing.assert_close(node_p, node[perm.node_perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(edge_p, edge[perm.edge_perm], rtol=1e-5, atol=1e-5)


def test_dense_errors_name_the_numbers():
    batch = uniform_batch([6, 4, 1])
    with pytest.raises(ValueError, match="6 input neurons.*max_in=5"):
        make_net("invariant", "relation", "mean")(batch)
    with pytest.raises(ValueError, match="3 output neurons.*max_out=2"):
        DWSLayer(1, 2, max_in=4, max_out=2)(*(lambda b: (b.x, b.edge_attr, b))(uniform_batch([2, 4, 3])))
    with pytest.raises(ValueError, match="depth 3"):                # tying="full" without parameters for it
        make_net("invariant", "full", "mean", depths=[2])(uniform_batch([2, 3, 3, 1]))
    with pytest.raises(ValueError, match="hidden layer"):            # uniform but no hidden layer
        make_net("invariant", "relation", "mean")(uniform_batch([2, 3]))


# ---------------------------------------------------------------------------------------------
# old checkpoints
# ---------------------------------------------------------------------------------------------

def test_checkpoints_from_the_scatter_only_code_predict_the_same():
    """State dicts and outputs written by the code before the dense path (tests/data/
    make_dwsnet_checkpoints.py): loaded now, the dense path gives the same outputs."""
    fixture = torch.load(FIXTURE)
    for case in fixture["cases"]:
        cfg = dict(case["config"])
        widths = cfg.pop("widths")
        batch = ng.stacked_to_batch(case["W"], case["b"], ng.mlp_architecture(widths, "relu"))
        assert UniformBlocks.detect(batch) is not None
        kw = dict(depths=[len(widths) - 1]) if cfg["tying"] == "full" else {}
        net = DWSNet(3 if cfg["head"] == "invariant" else None, hidden=6, num_layers=2, max_in=3, max_out=2,
                     **cfg, **kw)
        flat = case["flat"].split([int(torch.tensor(s).prod()) for s in case["shapes"]])
        net.load_state_dict({n: t.view(s) for n, t, s in zip(case["names"], flat, case["shapes"])})
        net.eval()
        with torch.no_grad():
            y = net(batch)
        got = {"logits": y} if cfg["head"] == "invariant" else \
            {"x": y.x, "edge_attr": y.edge_attr} if cfg["head"] == "equivariant" else {"x": y[0], "edge_attr": y[1]}
        assert got.keys() == case["outputs"].keys()
        for k, want in case["outputs"].items():
            torch.testing.assert_close(got[k], want, rtol=1e-5, atol=1e-5, msg=f"{case['config']} {k}")


# ---------------------------------------------------------------------------------------------
# sizes from the data (the trainer's registry)
# ---------------------------------------------------------------------------------------------

def test_trainer_sizes_dwsnet_from_the_dataset_architecture():
    """``build_model`` (what the trainer and ``load_trained`` call) sizes ``max_in`` / ``max_out`` to the
    dataset's architecture unless given, so a 100-input MLP zoo works where the default 64 refuses it,
    and a run's stored ``model_kwargs`` rebuild the same model."""
    from neuralgraph.train.registry import build_model

    arch = ng.mlp_architecture([100, 6, 3], "relu")
    batch = uniform_batch([100, 6, 3], B=2)
    net = build_model("dwsnet", 4, arch=arch, hidden=4, num_layers=1)
    assert (net.max_in, net.max_out) == (100, 3) and net.readout.max_in == 100
    assert net(batch).shape == (2, 4)
    again = build_model("dwsnet", 4, arch=arch, hidden=4, num_layers=1)
    again.load_state_dict(net.state_dict())                       # same shapes: the checkpoint loads
    with pytest.raises(ValueError, match="max_in=50 is smaller than the dataset needs \\(100"):
        build_model("dwsnet", 4, arch=arch, hidden=4, num_layers=1, max_in=50)
    with pytest.raises(ValueError, match="100 input neurons.*max_in=64.*DWSNet.for_data"):
        DWSNet(4, hidden=4, num_layers=1, max_in=64, max_out=64)(batch)


def test_standalone_dwsnet_sizes_follow_the_data():
    """Without max_in / max_out, a DWSNet takes them from its first batch (a 784-input MLP, which a fixed
    default of 64 refused), from a state dict, or from DWSNet.for_data; the result is the model the trainer
    builds for that architecture."""
    from neuralgraph.train.registry import build_model

    arch = ng.mlp_architecture([784, 6, 10], "relu")
    batch = uniform_batch([784, 6, 10], B=2)
    torch.manual_seed(0)
    net = DWSNet(4, hidden=4, num_layers=1)
    assert not net.sized and list(net.parameters()) == []
    out = net(batch)
    assert net.sized and (net.max_in, net.max_out) == (784, 10) and out.shape == (2, 4)
    trainer = build_model("dwsnet", 4, arch=arch, hidden=4, num_layers=1)
    assert {k: v.shape for k, v in trainer.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    fresh = DWSNet(4, hidden=4, num_layers=1)                     # sized by the state dict it loads
    fresh.load_state_dict(net.state_dict())
    assert (fresh.max_in, fresh.max_out) == (784, 10) and torch.equal(fresh(batch), out)
    assert (DWSNet.for_data(arch, 4).max_in, DWSNet.for_data(batch, 4).max_out) == (784, 10)
    wider = uniform_batch([785, 6, 10], B=2)
    with pytest.raises(ValueError, match="785 input neurons.*max_in=784"):
        net(wider)
    assert DWSNet(4, hidden=4, num_layers=1).double()(batch).dtype == torch.float64
