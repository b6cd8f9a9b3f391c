"""The uniform (dense-block) path of NG-GNN / NG-T equals the scatter path, and is taken only where it applies."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from dws_equiv.ng import NGGNN, NGTransformer
from dws_equiv.uniform import UniformBlocks

MODELS = {"nggnn": NGGNN, "ngt": NGTransformer}
HEADS = ["invariant", "equivariant", None]
FIXTURE = Path(__file__).parent / "data" / "ng_checkpoints.pt"


#: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def _stacked(widths, B, seed=0, act="sine"):
    g = torch.Generator().manual_seed(seed)
    W = [torch.randn(B, o, i, generator=g) / i ** 0.5 for i, o in zip(widths[:-1], widths[1:])]
    b = [torch.randn(B, o, generator=g) * 0.3 for o in widths[1:]]
    return ng.stacked_to_batch(W, b, ng.mlp_architecture(widths, act))


def _cnn_batch(B, seed=0):
    torch.manual_seed(seed)
    models = [nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(3, 5)) for _ in range(B)]
    return ng.batch_models(models, edge_dim=9)


def _flat(out) -> torch.Tensor:
    if isinstance(out, tuple):
        return torch.cat([t.flatten() for t in out])
    if isinstance(out, torch.Tensor):
        return out.flatten()
    return torch.cat([out.x.flatten(), out.edge_attr.flatten()])


def _pair(cls, head, **kwargs):
    torch.manual_seed(0)
    dense = cls(5, hidden=16, num_layers=3, head=head, n_probes=4, max_in=4, max_out=8, **kwargs)
    sparse = copy.deepcopy(dense)
    sparse.uniform_path = False
    return dense, sparse


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    scale = b.abs().max().clamp(min=1e-6)
    err = float(((a - b).abs().max() / scale).detach())
    assert err < tol, err


def test_detect_uniform_batches():
    blocks = UniformBlocks.detect(_stacked([2, 8, 5, 1], 3))
    assert blocks is not None and blocks.widths == (2, 8, 5, 1) and blocks.num_graphs == 3
    assert blocks.node_offsets == (0, 2, 10, 15) and blocks.edge_offsets == (0, 16, 56)
    permuted, _ = ng.permute_hidden(_stacked([2, 8, 5, 1], 3), generator=torch.Generator().manual_seed(1))
    assert UniformBlocks.detect(permuted) == blocks
    assert UniformBlocks.detect(_cnn_batch(2)).widths == (2, 4, 3, 5)
    single = ng.to_graph(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    assert UniformBlocks.detect(single).num_graphs == 1


def test_blocks_are_the_weights():
    W = [torch.randn(3, 8, 2), torch.randn(3, 5, 8), torch.randn(3, 1, 5)]
    b = [torch.randn(3, 8), torch.randn(3, 5), torch.randn(3, 1)]
    batch = ng.stacked_to_batch(W, b, ng.mlp_architecture([2, 8, 5, 1], "relu"))
    blocks = UniformBlocks.detect(batch)
    for m in (1, 2, 3):
        assert torch.equal(blocks.edge_blocks(batch.edge_attr)[m - 1][..., 0], W[m - 1])
        assert torch.equal(blocks.node_blocks(batch.x)[m][..., 0], b[m - 1])
    h = torch.randn(batch.num_nodes, 3)
    src, dst = batch.edge_index
    s, t = torch.randn(batch.num_nodes, 3), torch.randn(batch.num_nodes, 3)
    assert torch.equal(blocks.broadcast_nodes(t, s), t[dst] + s[src])
    assert torch.equal(blocks.broadcast_nodes(t, None), t[dst])
    assert torch.equal(blocks.node_tensor(blocks.node_blocks(h)), h)


def test_broadcast_nodes_gradient():
    batch = _stacked([3, 4, 2], 2)
    blocks = UniformBlocks.detect(batch)
    s = torch.randn(batch.num_nodes, 2, dtype=torch.float64, requires_grad=True)
    t = torch.randn(batch.num_nodes, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: blocks.broadcast_nodes(a, b), (t, s))


def test_detect_refuses_what_is_not_uniform():
    mlp = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))
    wider = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3))
    assert UniformBlocks.detect(Batch.from_data_list([ng.to_graph(mlp), ng.to_graph(wider)])) is None
    res = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), ng.Residual(nn.Linear(4, 4)), nn.Linear(4, 3))
    assert UniformBlocks.detect(ng.to_graph(res)) is None
    # same counts, edges stored in another order: the template check refuses it
    batch = _stacked([2, 4, 3], 2)
    order = torch.randperm(batch.num_edges, generator=torch.Generator().manual_seed(0))
    shuffled = batch.clone()
    for key in ("edge_index",):
        shuffled[key] = batch[key][:, order]
    for key in ("edge_attr", "edge_type", "edge_layer"):
        shuffled[key] = batch[key][order]
    assert UniformBlocks.detect(shuffled) is None
    # two graphs of one architecture whose second has its nodes listed in another layer order
    swapped = batch.clone()
    swapped.node_layer = batch.node_layer.clone()
    swapped.node_layer[-1], swapped.node_layer[-4] = batch.node_layer[-4], batch.node_layer[-1]
    assert UniformBlocks.detect(swapped) is None


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("widths", [[2, 8, 5, 1], [3, 7, 2], [2, 6, 6, 6, 4]])
def test_uniform_path_equals_scatter_path(name, head, widths):
    batch = _stacked(widths, 4, seed=len(widths))
    dense, sparse = _pair(MODELS[name], head)
    out_d, out_s = dense(batch), sparse(batch)
    _close(_flat(out_d), _flat(out_s))
    _flat(out_d).sin().sum().backward()
    _flat(out_s).sin().sum().backward()
    for (key, p_d), p_s in zip(dense.named_parameters(), sparse.parameters()):
        if p_s.grad is not None:
            _close(p_d.grad, p_s.grad, 1e-4)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("head", HEADS)
def test_narrow_edge_states_on_both_paths(name, head):
    """``edge_hidden`` below ``hidden``: the same function on both paths, edge states of that width, and the
    default (``edge_hidden = hidden``) builds the parameters of before (old checkpoints load)."""
    batch = _stacked([2, 8, 5, 1], 4, seed=5)
    dense, sparse = _pair(MODELS[name], head, edge_hidden=6)
    out_d, out_s = dense(batch), sparse(batch)
    _close(_flat(out_d), _flat(out_s))
    _flat(out_d).sin().sum().backward()
    _flat(out_s).sin().sum().backward()
    for p_d, p_s in zip(dense.parameters(), sparse.parameters()):
        if p_s.grad is not None:
            _close(p_d.grad, p_s.grad, 1e-4)
    if head is None:
        assert out_d[0].shape == (batch.num_nodes, 16) and out_d[1].shape == (batch.num_edges, 6)
    default, explicit = _pair(MODELS[name], head)[0], _pair(MODELS[name], head, edge_hidden=16)[0]
    assert {k: v.shape for k, v in default.state_dict().items()} == \
        {k: v.shape for k, v in explicit.state_dict().items()}


@pytest.mark.parametrize("name", MODELS)
def test_uniform_path_on_cnns_without_probes_and_with_fourier_features(name):
    batch = _cnn_batch(3)
    dense, sparse = _pair(MODELS[name], "equivariant", use_probes=False, rff_features=3)
    _close(_flat(dense(batch)), _flat(sparse(batch)))


def test_uniform_path_is_taken_and_skipped(monkeypatch):
    calls = []
    original = UniformBlocks.broadcast_nodes

    def spy(self, *args):
        calls.append(self.widths)
        return original(self, *args)

    monkeypatch.setattr(UniformBlocks, "broadcast_nodes", spy)
    model, _ = _pair(NGGNN, "invariant", use_probes=False)
    model(_stacked([2, 4, 3], 2))
    assert calls and calls[0] == (2, 4, 3)
    calls.clear()
    mixed = Batch.from_data_list([ng.to_graph(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))),
                                  ng.to_graph(nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3)))])
    model(mixed)
    assert calls == []
    # aggregators without a dense form keep the scatter path on uniform batches, with the same result
    torch.manual_seed(0)
    other = NGGNN(5, hidden=8, num_layers=2, use_probes=False, aggregators=("mean", "softmax"))
    assert not other.supports_uniform_path
    other(_stacked([2, 4, 3], 2))
    assert calls == []


@pytest.mark.parametrize("name", MODELS)
def test_uniform_path_symmetry_and_batch_independence(name):
    batch = _stacked([2, 10, 10, 3], 5, seed=3)
    torch.manual_seed(0)
    inv = MODELS[name](5, hidden=16, num_layers=3, n_probes=4, max_in=4, max_out=4).eval()
    permuted, _ = ng.permute_hidden(batch, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _close(inv(permuted), inv(batch))
        alone = inv(Batch.from_data_list([batch.get_example(1)]))
        _close(alone[0], inv(batch)[1])
    torch.manual_seed(0)
    eqv = MODELS[name](5, hidden=16, num_layers=3, head="equivariant", n_probes=4, max_in=4, max_out=4).eval()
    with torch.no_grad():
        edited, edited_perm = eqv(batch), eqv(permuted)
    # editing then permuting = permuting then editing (same permutation, seed 2)
    expected, _ = ng.permute_hidden(edited, generator=torch.Generator().manual_seed(2))
    _close(edited_perm.x, expected.x)
    _close(edited_perm.edge_attr, expected.edge_attr)


@pytest.mark.parametrize("case", range(4))
def test_checkpoints_from_before_the_uniform_path_predict_the_same(case):
    saved = torch.load(FIXTURE, weights_only=True)[case]
    cfg = saved["config"]
    batch = ng.stacked_to_batch(saved["W"], saved["b"], ng.mlp_architecture(cfg["widths"], "sine"))
    net = MODELS[cfg["model"]](4, hidden=8, num_layers=2, head=cfg["head"], use_probes=cfg["use_probes"],
                               n_probes=3, max_in=3, max_out=2)
    net.load_state_dict(saved["state_dict"])
    assert UniformBlocks.detect(batch) is not None
    with torch.no_grad():
        out = net.eval()(batch)
    got = [out] if isinstance(out, torch.Tensor) else list(out) if isinstance(out, tuple) else [out.x, out.edge_attr]
    assert len(got) == len(saved["outputs"])
    for a, b in zip(got, saved["outputs"]):
        _close(a, b)


@pytest.mark.parametrize("name", MODELS)
def test_uniform_path_bf16_autocast_keeps_invariance(name):
    from neuralgraph.train.accel import amp_autocast, to_float32

    batch = _stacked([2, 12, 12, 1], 4, seed=5)
    permuted, _ = ng.permute_hidden(batch, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    net = MODELS[name](5, hidden=16, num_layers=2, n_probes=4, max_in=4, max_out=4).eval()
    with torch.no_grad(), pytest.warns(RuntimeWarning) if not _native_bf16() else _nothing():
        with amp_autocast("cpu"):
            out, out_p = to_float32(net(batch)), to_float32(net(permuted))
    torch.testing.assert_close(out_p, out, rtol=2e-2, atol=2e-2)
    assert float((out - net(batch).detach()).abs().max()) > 0  # autocast really ran in bf16


def test_amp_on_a_cpu_without_native_bf16_warns(monkeypatch):
    from neuralgraph.train import accel

    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        accel.check_amp("cpu")
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda: True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accel.check_amp("cpu")


def _native_bf16() -> bool:
    from neuralgraph.train.accel import cpu_has_native_bf16

    return cpu_has_native_bf16()


def _nothing():
    import contextlib

    return contextlib.nullcontext()
