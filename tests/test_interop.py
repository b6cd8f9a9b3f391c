"""Interoperability: other layouts, order-matched state dicts, mixed batches, plain torch.load."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from neuralgraph.interop import from_state_dict, rename_state_dict
from neuralgraph.inr import INRDataset, save_inr_dataset


class DWSNetsStyleINR(nn.Module):
    """The module naming of the DWSNets / neural-graphs INRs (``seq.0.weight``, ...), not an nn.Sequential."""

    def __init__(self, widths=(2, 8, 8, 1)):
        super().__init__()
        self.seq = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))


def stacked(B=5, widths=(2, 8, 8, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    W = [torch.randn(B, b, a, generator=g) for a, b in zip(widths[:-1], widths[1:])]
    b = [torch.randn(B, o, generator=g) for o in widths[1:]]
    return W, b


def test_three_layouts_give_the_same_batch():
    W, b = stacked()
    ref = ng.stacked_to_batch(W, b, ng.mlp_architecture([2, 8, 8, 1], "sine"))
    dws = ng.from_weights_biases([w.transpose(1, 2).unsqueeze(-1) for w in W], [x.unsqueeze(-1) for x in b],
                                 layout="dwsnets", activation="sine", w0=30.0)
    nfn = ng.from_weights_biases([w.unsqueeze(1) for w in W], [x.unsqueeze(1) for x in b], layout="nfn",
                                 activation="sine", w0=30.0)
    tch = ng.from_weights_biases(W, b, layout="torch", activation="sine", w0=30.0)
    for out in (dws, nfn, tch):
        assert out.num_graphs == 5 and out.arch == ref.arch
        assert torch.equal(out.x, ref.x) and torch.equal(out.edge_attr, ref.edge_attr)
        assert torch.equal(out.edge_index, ref.edge_index)
    back_w, back_b = ng.batch_to_stacked(dws)
    assert all(torch.equal(x, y) for x, y in zip(back_w, W)) and all(torch.equal(x, y) for x, y in zip(back_b, b))


def test_activation_or_arch_is_required():
    """Weights do not say the activation: none is assumed. A SIREN's tensors read as ReLU would be another
    function, so from_weights_biases without activation= / arch= is refused."""
    W, b = stacked(widths=(3, 4, 2))
    with pytest.raises(ValueError, match="pass activation="):
        ng.from_weights_biases(W, b)
    with pytest.raises(ValueError, match="needs w0="):
        ng.from_weights_biases(W, b, activation="sine")
    out = ng.from_weights_biases(W, b, activation="relu")
    assert out.arch[0] == ng.mlp_architecture([3, 4, 2], "relu")
    arch = ng.mlp_architecture([3, 4, 2], "tanh")
    assert ng.from_weights_biases(W, b, arch=arch).arch[0] == arch
    with pytest.raises(ValueError, match="either arch= or activation="):
        ng.from_weights_biases(W, b, arch=arch, activation="relu")
    # the graph runs as the network the weights describe
    x = torch.randn(7, 3)
    model = ng.to_models(out)[2]
    assert torch.allclose(model(x), torch.relu(x @ W[0][2].T + b[0][2]) @ W[1][2].T + b[1][2], atol=1e-6)
    siren = ng.to_models(ng.from_weights_biases(W, b, activation="sine", w0=30.0))[2]
    assert torch.allclose(siren(x), torch.sin(30 * (x @ W[0][2].T + b[0][2])) @ W[1][2].T + b[1][2], atol=1e-5)


@pytest.mark.parametrize("layout", ["dwsnets", "nfn", "torch"])
def test_to_weights_biases_inverts_from_weights_biases(layout):
    """Both directions, bit for bit: tensors -> batch -> tensors, and batch -> tensors -> batch."""
    W, b = stacked()
    arch = ng.mlp_architecture([2, 8, 8, 1], "sine")
    batch = ng.stacked_to_batch(W, b, arch)
    tw, tb = ng.to_weights_biases(batch, layout)
    shapes = {"dwsnets": ([5, 2, 8, 1], [5, 8, 1]), "nfn": ([5, 1, 8, 2], [5, 1, 8]), "torch": ([5, 8, 2], [5, 8])}
    assert [list(tw[0].shape), list(tb[0].shape)] == list(shapes[layout])
    again = ng.from_weights_biases(tw, tb, layout, arch=arch)
    for key in ("x", "edge_attr", "edge_index", "node_layer"):
        assert torch.equal(again[key], batch[key]), key
    back_w, back_b = ng.to_weights_biases(again, layout)
    assert all(torch.equal(x, y) for x, y in zip(back_w, tw)) and all(torch.equal(x, y) for x, y in zip(back_b, tb))


@pytest.mark.parametrize("layout,w,b,match", [
    ("keras", [torch.zeros(1, 2, 3)], [torch.zeros(1, 2)], "unknown layout"),
    ("dwsnets", [torch.zeros(1, 3, 2)], [torch.zeros(1, 2)], r"\[B, in, out, 1\]"),
    ("nfn", [torch.zeros(1, 2, 2, 3)], [torch.zeros(1, 2, 2)], "channels"),
    ("torch", [torch.zeros(1, 2, 3), torch.zeros(1, 4, 5)], [torch.zeros(1, 2), torch.zeros(1, 4)], "inputs"),
    ("torch", [torch.zeros(2, 2, 3)], [torch.zeros(3, 2)], "number of networks"),
])
def test_bad_layouts_are_refused(layout, w, b, match):
    with pytest.raises(ValueError, match=match):
        ng.from_weights_biases(w, b, layout=layout, activation="relu")


def test_from_state_dict_converts_dwsnets_inr_state_dicts():
    torch.manual_seed(0)
    inr = DWSNetsStyleINR()
    sd = inr.state_dict()
    assert list(sd)[0] == "seq.0.weight"
    arch = ng.mlp_architecture([2, 8, 8, 1], "sine")
    with pytest.raises(ValueError, match="state dict does not match"):
        ng.to_graph(sd, arch)                       # the names differ
    g = from_state_dict(sd, arch)
    model = ng.to_model(g)
    x = torch.rand(10, 2)
    h = x
    for i, layer in enumerate(inr.seq):
        h = layer(h)
        h = torch.sin(30 * h) if i < 2 else h
    assert torch.allclose(model(x), h, atol=1e-6)
    renamed = rename_state_dict(sd, arch)
    assert list(renamed) == list(arch.build().state_dict()) and all(
        renamed[k] is v for k, v in zip(renamed, sd.values()))


def test_rename_state_dict_refuses_mismatches():
    arch = ng.mlp_architecture([2, 8, 8, 1])
    sd = DWSNetsStyleINR((2, 8, 4, 1)).state_dict()
    with pytest.raises(ValueError, match=r"tensor 2 \('seq.1.weight'\) has shape \[4, 8\]"):
        rename_state_dict(sd, arch)
    sd = DWSNetsStyleINR((2, 8, 8)).state_dict()
    with pytest.raises(ValueError, match="has 4 tensors, the architecture"):
        rename_state_dict(sd, arch)


def test_batch_models_mixes_mlps_and_cnns_and_rebuilds_them():
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)),
              nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)),
              nn.Sequential(nn.Linear(5, 1))]
    batch = ng.batch_models(models)
    assert batch.num_graphs == 3 and batch.edge_attr.shape[1] == 9
    assert ng.batch_models(models, edge_dim=12).edge_attr.shape[1] == 12
    inputs = [torch.randn(2, 3), torch.randn(2, 1, 5, 5), torch.randn(2, 5)]
    for m, rebuilt, x in zip(models, ng.to_models(batch), inputs):
        assert torch.equal(m(x), rebuilt(x))
    with pytest.raises(ValueError, match=r"models\[1\]"):
        ng.batch_models([models[0], nn.Sequential(nn.LSTM(2, 2))])


def test_graphs_and_batches_load_with_plain_torch_load(tmp_path):
    torch.manual_seed(0)
    g = ng.to_graph(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 1)).eval())
    batch = ng.batch_models([nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)),
                             nn.Sequential(nn.Conv1d(1, 2, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(2, 1))])
    W, b = stacked()
    inrs = ng.from_weights_biases(W, b, activation="sine", w0=30.0)
    for name, obj in (("g", g), ("batch", batch), ("inrs", inrs)):
        torch.save(obj, tmp_path / f"{name}.pt")
        back = torch.load(tmp_path / f"{name}.pt")        # weights_only=True, torch's default
        assert type(back) is type(obj)
        assert back.arch == obj.arch and back.model_state == obj.model_state
        for key in obj.keys():
            if isinstance(obj[key], torch.Tensor):
                assert torch.equal(back[key], obj[key]), key
        if isinstance(obj, Batch):
            assert back.num_graphs == obj.num_graphs
            assert torch.equal(back.get_example(1).edge_attr, obj.get_example(1).edge_attr)
            assert torch.equal(Batch.from_data_list(back.to_data_list()).x, obj.x)
    x = torch.randn(4, 2)
    assert torch.equal(ng.to_model(torch.load(tmp_path / "g.pt"))(x), ng.to_model(g)(x))


def test_dataset_file_loads_with_plain_torch_load(tmp_path):
    from neuralgraph.data import load_digits
    from neuralgraph.inr import fit_sirens

    images, labels = load_digits()
    fit = fit_sirens(images[:6], w0=10.0, steps=5, progress=False)
    path = save_inr_dataset(tmp_path / "d.pt", fit.weights, fit.biases, labels[:6], fit.arch, num_classes=10)
    raw = torch.load(path)                                  # weights_only=True, torch's default
    ds = INRDataset(path)
    assert all(torch.equal(a, b) for a, b in zip(raw["weights"], ds.weights))
    assert torch.equal(raw["labels"], ds.labels)
    assert ng.Architecture.from_dict(raw["arch"]) == fit.arch


def test_batch_models_takes_graphs_too():
    """Graphs and models mix (graphs padded to the common taps); an empty list gets a clear message."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    batch = ng.batch_models([ng.to_graph(mlp), cnn])
    assert batch.num_graphs == 2 and batch.edge_attr.shape[1] == 9
    x = torch.randn(2, 3)
    assert torch.equal(ng.to_models(batch)[0](x), mlp(x))
    with pytest.raises(ValueError, match="got an empty list"):
        ng.batch_models([])
    with pytest.raises(ValueError, match=r"models\[0\] is a NeuralGraphBatch"):
        ng.batch_models([batch])
