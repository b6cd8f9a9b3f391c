"""networkx export and drawings."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import neuralgraph as ng  # noqa: E402
from neuralgraph.schema import NODE_HIDDEN, NODE_INPUT, NODE_OUTPUT
from neuralgraph.visualize import draw, to_networkx  # noqa: E402


def test_to_networkx_carries_weights_and_biases():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    G = to_networkx(ng.to_graph(model))
    assert G.number_of_nodes() == 9 and G.number_of_edges() == 3 * 4 + 4 * 2
    # node 3 + i is neuron i of layer 1; node j is input j
    assert G.edges[1, 3 + 2]["weight"] == model[0].weight[2, 1].item()
    assert G.nodes[3 + 1]["bias"] == model[0].bias[1].item()
    assert [G.nodes[n]["type"] for n in (0, 3, 8)] == [NODE_INPUT, NODE_HIDDEN, NODE_OUTPUT]


def test_conv_edges_keep_their_kernels():
    model = nn.Sequential(nn.Conv2d(1, 2, (2, 3)), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))
    G = to_networkx(ng.to_graph(model, edge_dim=9))
    kernel = G.edges[0, 1]["kernel"]
    assert kernel == model[0].weight[0, 0].flatten().tolist()
    # the mean of the real taps, up to float32 summation order (the padded taps are summed too)
    assert G.edges[0, 1]["weight"] == pytest.approx(torch.tensor(kernel).mean().item(), rel=1e-6, abs=1e-7)


def test_draw_saves_a_png(tmp_path):
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    path = tmp_path / "cnn.png"
    ax = draw(ng.to_graph(cnn), path=path, title="cnn")
    assert ax.get_title() == "cnn"
    image = plt.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # something was drawn
    plt.close("all")


def test_draw_one_graph_of_a_batch(tmp_path):
    """A batch of several graphs is drawn one graph at a time (index=), not on top of each other."""
    from torch_geometric.data import Batch

    from neuralgraph.visualize import layer_labels

    small = ng.to_graph(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
    wide = ng.to_graph(nn.Sequential(nn.Linear(2, 7), nn.Tanh(), nn.Linear(7, 1)))
    batch = Batch.from_data_list([small, wide])
    ax = draw(batch, index=1, path=tmp_path / "b.png")
    assert "7 neurons" in layer_labels(batch.get_example(1))[1][0]
    assert len(ax.collections) > 0
    assert layer_labels(Batch.from_data_list([small]))[1][0].startswith("layer 1\n3 neurons\nlinear")
    with pytest.raises(ValueError, match="the batch holds 2 graphs"):
        to_networkx(batch)
    plt.close("all")
