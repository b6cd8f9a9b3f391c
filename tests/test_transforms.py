"""PyG-style transforms of neural graphs; INRDataset transform= and slicing."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.transforms import Compose

import neuralgraph as ng
from neuralgraph.inr import INRDataset, fit_sirens, save_inr_dataset
from neuralgraph.transforms import PermuteHidden, WeightDropout, WeightNoise


def mixed_batch():
    torch.manual_seed(0)
    return ng.batch_models([nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)),
                            nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                          nn.Linear(3, 2))])


def test_permute_hidden_keeps_every_function_and_is_reproducible():
    batch = mixed_batch()
    out = PermuteHidden(torch.Generator().manual_seed(1))(batch)
    again = PermuteHidden(torch.Generator().manual_seed(1))(batch)
    assert torch.equal(out.edge_attr, again.edge_attr) and not torch.equal(out.edge_attr, batch.edge_attr)
    for x, a, b in zip([torch.randn(4, 3), torch.randn(4, 1, 6, 6)], ng.to_models(batch), ng.to_models(out)):
        assert torch.allclose(a(x), b(x), atol=1e-5)


def test_noise_and_dropout_touch_only_real_weights_and_biases():
    batch = mixed_batch()
    noisy = WeightNoise(0.1, generator=torch.Generator().manual_seed(0))(batch)
    diff = noisy.edge_attr - batch.edge_attr
    assert torch.all(diff[~batch.edge_mask] == 0)
    big = ng.to_graph(nn.Sequential(nn.Linear(60, 60), nn.ReLU(), nn.Linear(60, 1)))     # 3660 weights
    d = WeightNoise(0.1, generator=torch.Generator().manual_seed(0))(big).edge_attr - big.edge_attr
    assert d.std() == pytest.approx(0.1, rel=0.05) and d.mean().abs() < 0.01
    assert torch.all(noisy.x[batch.node_layer == 0] == batch.x[batch.node_layer == 0])
    assert (noisy.x[batch.node_layer > 0] != batch.x[batch.node_layer > 0]).all()
    assert torch.equal(WeightNoise(0.1, bias=False)(batch).x, batch.x)
    dropped = WeightDropout(0.5, generator=torch.Generator().manual_seed(0))(batch)
    zeroed = (dropped.edge_attr == 0) & (batch.edge_attr != 0)
    assert 0.35 < zeroed[batch.edge_mask].float().mean() < 0.65 and torch.equal(dropped.x, batch.x)
    assert batch.edge_attr.ne(0).any()                        # the input was not modified
    ng.to_models(dropped)                                    # still valid graphs


def test_compose_and_dataset_transform_and_slicing(tmp_path):
    from neuralgraph.data import load_digits

    images, labels = load_digits()
    fit = fit_sirens(images[:12], w0=10.0, steps=5, progress=False)
    path = save_inr_dataset(tmp_path / "d.pt", fit.weights, fit.biases, labels[:12], fit.arch, num_classes=10)
    t = Compose([PermuteHidden(torch.Generator().manual_seed(0)), WeightNoise(0.0)])
    plain, ds = INRDataset(path), INRDataset(path, transform=t)
    g, ref = ds[3], plain[3]
    x = torch.rand(5, 2)
    assert not torch.equal(g.edge_attr, ref.edge_attr)
    assert torch.allclose(ng.to_model(g)(x), ng.to_model(ref)(x), atol=1e-5)
    assert int(g.y) == int(labels[3])
    sub = ds[2:8]
    assert isinstance(sub, INRDataset) and len(sub) == 6 and torch.equal(sub.labels, plain.labels[2:8])
    assert torch.equal(sub.weights[0], plain.weights[0][2:8]) and sub.transform is t
    mask = plain.labels % 2 == 0
    assert len(plain[mask]) == int(mask.sum()) and len(plain[[0, -1]]) == 2
    assert torch.equal(sub.batch([0, 1], normalize=False).y, plain.labels[2:4])


@pytest.mark.parametrize("make,match", [
    (lambda: WeightNoise(-1.0), "std"),
    (lambda: WeightNoise(float("nan")), "std"),
    (lambda: WeightDropout(1.0), r"\[0, 1\)"),
    (lambda: PermuteHidden(generator=3), "generator"),
])
def test_bad_settings(make, match):
    with pytest.raises(ValueError, match=match):
        make()
