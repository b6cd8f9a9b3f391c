"""Pictures (issue 14): layer/activation labels, kernel-norm colours, permutation picture, dataset histograms,
fit-PSNR histogram, originals beside 4x reconstructions, learning curves with lr and test point, dataset report
and the ``neuralgraph draw`` command. Real small data: digit INRs fitted for a few steps."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import neuralgraph as ng  # noqa: E402
from neuralgraph.visualize import colour_values, draw, draw_permutation, edge_value_kind, layer_labels  # noqa: E402


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """train/val/test.pt of 20/10/10 digit INRs fitted for 20 steps (a few seconds)."""
    from neuralgraph.inr import build_inr_splits

    out = tmp_path_factory.mktemp("digits_inrs")
    build_inr_splits("digits", out, n_train=20, n_val=10, n_test=10, steps=20, progress=False)
    return out


@pytest.fixture(scope="module")
def digits(digits_dir):
    from neuralgraph.inr import INRDataset

    return INRDataset(digits_dir / "train.pt")


def _png_ok(path) -> None:
    """The file exists, is a PNG with something drawn on it."""
    assert path.is_file() and path.stat().st_size > 1000
    image = plt.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01


def test_draw_labels_layers_and_activations(tmp_path, digits):
    graph = digits[0]
    assert layer_labels(graph) == [("layer 0\n2 neurons", "input"), ("layer 1\n32 neurons\nlinear", "sine"),
                                   ("layer 2\n32 neurons\nlinear", "sine"), ("layer 3\n1 neuron\nlinear", "no activation")]
    ax = draw(graph, path=tmp_path / "siren.png", scale="layer", title="digit SIREN")
    texts = {t.get_text() for t in ax.texts}
    assert {"layer 1\n32 neurons\nlinear", "sine", "input", "no activation"} <= texts
    _png_ok(tmp_path / "siren.png")
    plt.close("all")


def test_conv_edges_coloured_by_kernel_norm(tmp_path):
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    graph = ng.to_graph(cnn, taps=9)
    assert edge_value_kind(graph) == "kernel norm"
    w, _ = colour_values(graph)
    # conv edges: the L2 norm of each 3x3 kernel (edge order: target-major), the final Linear: |w|
    expected = torch.cat([cnn[0].weight.detach().flatten(1).norm(dim=1), cnn[4].weight.detach().abs().flatten()])
    torch.testing.assert_close(w, expected)
    ax = draw(graph, path=tmp_path / "cnn.png")
    labels = [a.get_ylabel() for a in ax.figure.axes]
    assert any("kernel L2 norm" in s for s in labels)
    _png_ok(tmp_path / "cnn.png")
    plt.close("all")
    mlp = ng.to_graph(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), taps=9)   # padded, one real tap
    assert edge_value_kind(mlp) == "weight" and (colour_values(mlp)[0] < 0).any()


def test_draw_permutation_colours_neurons_by_identity(tmp_path):
    torch.manual_seed(0)
    graph = ng.to_graph(nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 1)))
    permuted, perm = ng.permute_hidden(graph, torch.Generator().manual_seed(1))
    path = draw_permutation(graph, permuted, perm, tmp_path / "perm.png")
    _png_ok(path)
    with pytest.raises(ValueError, match="permuted.x"):
        draw_permutation(graph, graph, perm, tmp_path / "bad.png")   # not the graph perm was applied to
    assert not (tmp_path / "bad.png").exists()
