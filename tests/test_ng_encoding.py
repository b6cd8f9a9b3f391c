"""NG input encoding: symmetry-respecting positional embeddings, reverse edges, probe features."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from neuralgraph.graph import pad_edge_features
from neuralgraph.schema import EDGE_RESIDUAL, EDGE_REVERSE, NODE_HIDDEN, NODE_INPUT, NODE_OUTPUT
from dws_equiv.ng import EDGE_REVERSE_RESIDUAL, FourierFeatures, NGEncoder, ProbeFeatures, bidirectional
from strategies import cnns, mlps, resnets

IMAGE = 16  # probe image size: large enough for every CNN the strategies draw


def _batch(models, edge_dim=9):
    return ng.batch_models(models, edge_dim=edge_dim)


def _reference_values(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Neuron values from the real model: the input of every Linear/Conv (spatially averaged)
    is the value of the previous graph layer; the model output is the last layer."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0]))
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    vals = [t.flatten(2).mean(-1) if t.dim() > 2 else t for t in seen + [out]]
    return torch.cat(vals, 1).T  # [num_nodes, P]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(mlps(norms=True), cnns(), resnets()), min_size=1, max_size=4), st.integers(0, 1000))
def test_probe_values_are_the_real_networks_activations(models, seed):
    models = [m.double().eval() for m in models]
    batch = _batch(models)
    torch.manual_seed(seed)
    probes = ProbeFeatures(n_probes=5, max_in=16, image_size=IMAGE).double()
    values = probes(batch)
    assert values.shape == (batch.num_nodes, 5)
    for i, m in enumerate(models):
        x = probes.inputs(batch.arch[i]).detach()
        torch.testing.assert_close(values[batch.batch == i], _reference_values(m, x), rtol=1e-9, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.one_of(mlps(), cnns(), resnets()), min_size=2, max_size=5), st.integers(0, 1000))
def test_probe_values_are_equivariant(models, seed):
    batch = _batch(models)
    probes = ProbeFeatures(n_probes=4, max_in=16, image_size=IMAGE)
    permuted, perm = ng.permute_hidden(batch, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(probes(permuted), probes(batch)[perm.node_perm], rtol=1e-5, atol=1e-5)


def test_probe_inputs_get_gradients_and_follow_the_input_size_rule():
    models = [nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)),
              nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1))]
    probes = ProbeFeatures(n_probes=3, max_in=5, image_size=8)
    values = probes(_batch(models))
    values.square().sum().backward()
    # only the coordinates/channels the networks read receive gradient
    assert probes.points.grad[:, :3].abs().sum() > 0 and probes.points.grad[:, 3:].abs().sum() == 0
    assert probes.images.grad[:, :2].abs().sum() > 0 and probes.images.grad[:, 2:].abs().sum() == 0
    # input neurons carry the probe inputs themselves
    torch.testing.assert_close(values[:3], probes.points[:, :3].T)
    with pytest.raises(ValueError, match="max_in=5"):
        probes(ng.to_graph(nn.Sequential(nn.Linear(6, 2))))


def test_probe_forward_error_names_the_image_size():
    model = nn.Sequential(nn.Conv2d(1, 2, 5), nn.ReLU(), nn.Conv2d(2, 2, 5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 1))
    with pytest.raises(ValueError, match="image_size"):
        ProbeFeatures(n_probes=2, max_in=4, image_size=6)(ng.to_graph(model))


def test_positional_embeddings_respect_the_symmetry():
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)),
              nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))]
    batch = _batch(models, edge_dim=1)
    enc = NGEncoder(8, max_in=4, max_out=4, max_depth=4, max_taps=1)
    pos = enc.positional(batch)
    for layer in range(1, 3):  # hidden neurons of one layer share an embedding, across graphs too
        sel = (batch.node_type == NODE_HIDDEN) & (batch.node_layer == layer)
        assert torch.equal(pos[sel], pos[sel][:1].expand_as(pos[sel]))
    first = batch.batch == 0
    inputs = pos[first & (batch.node_type == NODE_INPUT)]
    outputs = pos[first & (batch.node_type == NODE_OUTPUT)]
    assert len({tuple(r.tolist()) for r in torch.cat([inputs, outputs])}) == 5  # every in/out neuron its own
    # input position p of graph 0 and of graph 1 share the embedding
    torch.testing.assert_close(pos[(batch.batch == 1) & (batch.node_type == NODE_INPUT)], inputs[:2])
    permuted, perm = ng.permute_hidden(batch, torch.Generator().manual_seed(0))
    h, e = enc(batch)
    hp, ep = enc(permuted)
    torch.testing.assert_close(hp, h[perm.node_perm])
    torch.testing.assert_close(ep, e[perm.edge_perm])


@pytest.mark.parametrize("model, kwargs, match", [
    (nn.Sequential(nn.Linear(5, 2)), dict(max_in=4), "max_in=4"),
    (nn.Sequential(nn.Linear(2, 5)), dict(max_out=4), "max_out=4"),
    (nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1)), dict(max_depth=2),
     "max_depth=2"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1)), dict(max_taps=4),
     "max_taps=4"),
])
def test_encoder_bounds_raise_clear_errors(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        NGEncoder(8, **kwargs)(ng.to_graph(model))


def test_bidirectional_edges_and_kinds():
    model = nn.Sequential(nn.Linear(3, 4), ng.Residual(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2))
    g = ng.to_graph(model)
    E = g.edge_index.size(1)
    ei2, kind2 = bidirectional(g.edge_index, g.edge_type)
    assert ei2.shape == (2, 2 * E)
    assert torch.equal(ei2[:, :E], g.edge_index) and torch.equal(ei2[:, E:], g.edge_index.flip(0))
    assert torch.equal(kind2[:E], g.edge_type)
    residual = g.edge_type == EDGE_RESIDUAL
    assert residual.sum() == 4
    assert (kind2[E:][residual] == EDGE_REVERSE_RESIDUAL).all() and (kind2[E:][~residual] == EDGE_REVERSE).all()


def test_fourier_features_and_tap_padding():
    rff = FourierFeatures(3, sigma=2.0)
    x = torch.tensor([[0.1, -0.2]])
    out = rff(x)
    assert out.shape == (1, 2 * 7)
    torch.testing.assert_close(out[0, :7:7], x[0, :1])
    torch.testing.assert_close(out[0, 1:4], torch.sin(2 * torch.pi * 0.1 * rff.freq))
    # a 1-tap MLP graph and the same graph padded to 9 taps encode identically
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    enc = NGEncoder(8, max_taps=9, rff_features=3)
    g = ng.to_graph(model)
    h1, e1 = enc(g)
    h9, e9 = enc(pad_edge_features(g, 9))
    torch.testing.assert_close(e1, e9)
    torch.testing.assert_close(h1, h9)


def test_probes_run_the_raw_networks_of_a_normalised_dataset(tmp_path):
    """Dataset normalisation changes what the processor sees, not the networks the probes run."""
    from neuralgraph.inr import INRDataset, build_inr_splits

    paths = build_inr_splits("digits", tmp_path, n_train=12, n_val=10, n_test=10, steps=20, progress=False)
    raw = INRDataset(paths["train"]).batch(torch.arange(12))
    normed = INRDataset(paths["train"], normalize=True).batch(torch.arange(12))
    assert not torch.allclose(raw.edge_attr, normed.edge_attr)
    probes = ProbeFeatures(n_probes=6, max_in=2)
    torch.testing.assert_close(probes(normed), probes(raw), rtol=0, atol=0)
    # and they still permute with the graph
    permuted, perm = ng.permute_hidden(normed, torch.Generator().manual_seed(0))
    torch.testing.assert_close(probes(permuted), probes(normed)[perm.node_perm], rtol=1e-5, atol=1e-5)


def _float64(batch: Batch) -> Batch:
    out = batch.clone()
    for key in ("x", "edge_attr", "node_norm"):
        if key in out and out[key] is not None and out[key].dtype.is_floating_point:
            out[key] = out[key].double()
    return out


@pytest.mark.parametrize("name", ["NGGNN", "NGTransformer"])
def test_nothing_cached_survives_a_dtype_change(name):
    """Forward, convert (``.double()``), forward again: the same outputs as a fresh float64 model.

    The CPU twin of the device-move bug (a per-architecture cache keeping the old device/dtype);
    tests/test_cuda.py checks the move to CUDA itself.
    """
    import dws_equiv.ng as ngm

    cls = getattr(ngm, name)
    models = [nn.Sequential(nn.Linear(2, 6), ng.Sine(30.0), nn.Linear(6, 1)),
              nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.GELU(), nn.Linear(5, 2)),
              nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))]
    batch = _batch(models)

    def make():
        torch.manual_seed(0)
        return cls(out_dim=3, hidden=16, num_layers=2, n_probes=4, probe_image_size=IMAGE, max_in=16,
                   max_out=16).eval()

    with torch.no_grad():
        net = make()
        out32 = net(batch)
        out64 = net.double()(_float64(batch))                  # the same object, after running in float32
        fresh = make().double()(_float64(batch))
        back = net.float()(batch)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64, fresh, rtol=0, atol=0)
    torch.testing.assert_close(out64.float(), out32, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(back, out32, rtol=0, atol=0)
    # a batch left on another device than the model: one clear error, not a matmul mismatch inside vmap
    with pytest.raises(ValueError, match="batch.to"):
        net(batch.to("meta"))
