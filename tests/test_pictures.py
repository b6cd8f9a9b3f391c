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
    graph = ng.to_graph(cnn, edge_dim=9)
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
    mlp = ng.to_graph(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), edge_dim=9)   # padded, one real tap
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


def test_layer_and_psnr_histograms(tmp_path, digits):
    from neuralgraph.train.plots import plot_layer_histograms, plot_psnr_histogram

    _png_ok(plot_layer_histograms(digits, tmp_path / "layers.png"))
    _png_ok(plot_layer_histograms(digits.params(slice(0, 5)), tmp_path / "layers5.png"))   # (weights, biases)
    _png_ok(plot_psnr_histogram(digits.psnr, tmp_path / "psnr.png", target=40.0))
    with pytest.raises(ValueError, match="same number"):
        w, b = digits.params(slice(0, 5))
        plot_layer_histograms((w, [b[0][:2], *b[1:]]), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="no PSNR"):
        plot_psnr_histogram(torch.empty(0), tmp_path / "bad.png")


def test_reconstructions_with_originals_at_4x(tmp_path, digits):
    from neuralgraph.data import load_digits
    from neuralgraph.inr import psnr, render
    from neuralgraph.train.plots import plot_reconstructions_with_originals

    fit = digits.meta["fit"]
    idx = torch.arange(6)
    originals = load_digits()[0][digits.source_index[idx]]
    weights, biases = digits.params(idx)
    # the file's PSNR is that of the H x W render against these originals: render / w0 / offset are the fit's
    native = render(weights, biases, 8, 8, w0=fit["w0"], offset=fit["offset"])
    torch.testing.assert_close(psnr(native, originals), digits.psnr[idx], atol=0.05, rtol=0)
    path = plot_reconstructions_with_originals(originals, (weights, biases), digits.psnr[idx], tmp_path / "rec.png",
                                               upsample=4, w0=fit["w0"], offset=fit["offset"])
    _png_ok(path)
    _png_ok(plot_reconstructions_with_originals(originals, (weights, biases), None, tmp_path / "rec2.png",
                                                w0=fit["w0"], offset=fit["offset"]))
    with pytest.raises(ValueError, match="upsample"):
        plot_reconstructions_with_originals(originals, (weights, biases), None, tmp_path / "bad.png", upsample=0)
    with pytest.raises(ValueError, match="originals for"):
        plot_reconstructions_with_originals(originals[:2], (weights, biases), None, tmp_path / "bad.png")


def test_learning_curves_with_lr_and_test_point(tmp_path):
    from neuralgraph.train.plots import plot_learning_curves

    # a real (tiny) training: logistic regression on sklearn digits, loss/acc/lr per epoch
    from neuralgraph.data import load_digits

    images, labels = load_digits()
    x, y = images.reshape(len(labels), -1), labels
    xtr, ytr, xva, yva, xte, yte = x[:1000], y[:1000], x[1000:1400], y[1000:1400], x[1400:], y[1400:]
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 8)
    history, best = [], None
    for epoch in range(1, 9):
        lr = opt.param_groups[0]["lr"]
        loss = nn.functional.cross_entropy(model(xtr), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            row = {"epoch": epoch, "lr": lr, "train_loss": float(nn.functional.cross_entropy(model(xtr), ytr)),
                   "train_acc": float((model(xtr).argmax(1) == ytr).float().mean()),
                   "val_loss": float(nn.functional.cross_entropy(model(xva), yva)),
                   "val_acc": float((model(xva).argmax(1) == yva).float().mean())}
            history.append(row)
            if best is None or row["val_acc"] > best[1]:
                best = (epoch, row["val_acc"], {"loss": float(nn.functional.cross_entropy(model(xte), yte)),
                                                "acc": float((model(xte).argmax(1) == yte).float().mean())})
    assert best[2]["acc"] > 0.5            # it learned something
    _png_ok(plot_learning_curves(history, tmp_path / "old.png", best_epoch=best[0]))     # backward compatible
    _png_ok(plot_learning_curves(history, tmp_path / "lc.png", best_epoch=best[0],
                                 lr=[h["lr"] for h in history], test=best[2]))
    assert (tmp_path / "lc.png").stat().st_size != (tmp_path / "old.png").stat().st_size
    with pytest.raises(ValueError, match="lr has 3 values"):
        plot_learning_curves(history, tmp_path / "bad.png", lr=[0.1] * 3)


def test_dataset_report_and_draw_command(tmp_path, digits_dir):
    from neuralgraph.cli import main
    from neuralgraph.visualize import dataset_report

    paths = dataset_report(digits_dir, tmp_path / "report")
    assert [p.name for p in paths] == ["layer_histograms.png", "fit_psnr.png", "reconstructions_4x.png"]
    for p in paths:
        _png_ok(p)
    assert main(["draw", "--data", str(digits_dir), "--out", str(tmp_path / "cli")]) == 0
    for name in ("layer_histograms.png", "fit_psnr.png", "reconstructions_4x.png"):
        _png_ok(tmp_path / "cli" / name)
    assert main(["draw", "--graph-of", str(digits_dir), "--index", "1", "--out", str(tmp_path / "net.png"),
                 "--permute"]) == 0
    _png_ok(tmp_path / "net.png")
    _png_ok(tmp_path / "net_permutation.png")
    assert main(["draw", "--graph-of", str(digits_dir), "--index", "99", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["draw", "--data", str(tmp_path / "missing")]) == 2
