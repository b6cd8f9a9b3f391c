"""Importing the files the DWSNets / neural-graphs code writes (tests/data/peer_inrs, made by make_peer_inrs.py).

The fixtures are their own scripts' output: INR state dicts of DWSNets' ``nn.inr.INR``, splits JSONs
with numeric-string labels (MNIST) or lists of paths (sine INRs, whose files also hold ``coef`` and
numpy arrays), DWSNets' statistics file, and the images DWSNets' ``INRImageDataset`` renders.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import neuralgraph as ng
from neuralgraph.interop import from_state_dict
from neuralgraph.importers import check_statistics, import_inr_splits, read_peer_file, read_splits_json
from neuralgraph.inr import INRDataset, image_grid, load_splits, render, siren_forward
from neuralgraph.inr.coords import convert_coordinates, coordinate_convention, image_coordinates, row_col_params

PEERS = Path(__file__).parent / "data" / "peer_inrs"
MNIST = PEERS / "mnist"
SINES = PEERS / "sines"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The MNIST fixture imported as the CLI does by default (their weights, their convention)."""
    out = tmp_path_factory.mktemp("imported")
    import_inr_splits(MNIST / "mnist_splits.json", out, statistics=MNIST / "statistics.pth", image_shape=(28, 28),
                      progress=False)
    return out


def their_grid(shape=(28, 28)) -> torch.Tensor:
    """DWSNets' / neural-graphs' ``make_coordinates``, as their code writes it: ``np.meshgrid`` of the x axis
    (``shape[0]`` points) and the y axis, default ``indexing="xy"``, flattened, stacked as ``(x, y)``."""
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]))
    return torch.from_numpy(np.stack([x.flatten(), y.flatten()]).T).float()


def their_weights(path: Path) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Weights / biases of one file as their loaders take them: keys holding 'weight' / 'bias', in order."""
    sd = torch.load(path, weights_only=True)
    return [v for k, v in sd.items() if "weight" in k], [v for k, v in sd.items() if "bias" in k]


def test_splits_json_as_their_scripts_write_it(imported):
    """neural-graphs' JSON (relative paths, labels "7") and DWSNets' (absolute paths) import alike; the labels
    are the numbers their loaders read with int()."""
    table = json.loads((MNIST / "mnist_splits.json").read_text())
    assert isinstance(table["train"]["label"][0], str)
    for split in ("train", "val", "test"):
        ds = INRDataset(imported / f"{split}.pt")
        assert ds.labels.tolist() == [int(y) for y in table[split]["label"]]
        for i, p in enumerate(table[split]["path"]):
            W, b = their_weights(MNIST / p)
            got_w, got_b = ds.params([i])
            assert all(torch.equal(x[0], y) for x, y in zip(got_w, W)) and all(
                torch.equal(x[0], y) for x, y in zip(got_b, b))
    assert read_splits_json(MNIST / "mnist_splits.json")["val"]["label"] == [int(y) for y in table["val"]["label"]]


def test_absolute_paths_as_dwsnets_writes_them(imported, tmp_path):
    table = json.loads((MNIST / "mnist_splits.json").read_text())
    for entry in table.values():                        # DWSNets: (os.getcwd() / p).as_posix()
        entry["path"] = [(MNIST / p).resolve().as_posix() for p in entry["path"]]
    (tmp_path / "dws.json").write_text(json.dumps(table))
    import_inr_splits(tmp_path / "dws.json", tmp_path / "out", progress=False)
    for split in ("train", "val", "test"):
        a, b = INRDataset(tmp_path / "out" / f"{split}.pt"), INRDataset(imported / f"{split}.pt")
        assert all(torch.equal(x, y) for x, y in zip(a.weights, b.weights)) and torch.equal(a.labels, b.labels)


def test_imported_inrs_render_like_the_peers_not_transposed(imported):
    """The peers' own images (their INRImageDataset, renders.pt) and their grid written here agree with
    ng.to_model on this library's (row, col) grid, the edit task's renderer and render(): not the transposes."""
    renders = torch.load(MNIST / "renders.pt")
    for split in ("train", "val", "test"):
        ds = INRDataset(imported / f"{split}.pt")
        assert coordinate_convention(ds.arch) == "xy"
        peers = renders[split][:, 0]                                     # [n, 28, 28]
        W, b = ds.params(slice(None))
        theirs = (siren_forward(W, b, their_grid(), 30.0) + 0.5).reshape(-1, 28, 28)
        torch.testing.assert_close(theirs, peers, atol=1e-5, rtol=0)
        models = ng.to_models(ds.batch(slice(None)))
        with torch.no_grad():
            ours = torch.stack([m(image_grid(28, 28)).reshape(28, 28) for m in models])
        torch.testing.assert_close(ours, peers, atol=1e-5, rtol=0)
        assert (ours.transpose(1, 2) - peers).abs().max() > 0.5            # a transposed digit is far off
        grid = image_coordinates(ds.arch, 28, 28)
        torch.testing.assert_close((siren_forward(W, b, grid, 30.0) + 0.5).reshape(-1, 28, 28), peers, atol=1e-5,
                                   rtol=0)
        torch.testing.assert_close(render(*row_col_params(ds.arch, W, b), 28, 28), peers, atol=1e-5, rtol=0)
    from neuralgraph.tasks.edit import Edit

    task = Edit()
    ds = INRDataset(imported / "test.pt")
    task.setup({"train": ds})
    torch.testing.assert_close(task.render(ds.batch(slice(None))), renders["test"][:, 0], atol=1e-5, rtol=0)


def test_to_coords_rc_converts_exactly(imported, tmp_path):
    """to_coords='rc': the first layer's two columns swapped (no value changes), no Reorder, the same images."""
    import_inr_splits(MNIST / "mnist_splits.json", tmp_path / "rc", to_coords="rc", progress=False)
    kept, rc = INRDataset(imported / "test.pt"), INRDataset(tmp_path / "rc" / "test.pt")
    assert rc.arch == ng.inr.siren_architecture((2, 32, 32, 1), 30.0, 0.5) and coordinate_convention(rc.arch) == "rc"
    assert torch.equal(rc.weights[0], kept.weights[0].flip(-1))
    assert all(torch.equal(x, y) for x, y in zip(rc.weights[1:] + rc.biases, kept.weights[1:] + kept.biases))
    back_w, back_b, arch = convert_coordinates(rc.weights, rc.biases, rc.arch, "xy")
    assert arch == kept.arch and all(torch.equal(x, y) for x, y in zip(back_w, kept.weights))
    peers = torch.load(MNIST / "renders.pt")["test"][:, 0]
    torch.testing.assert_close(render(rc.weights, rc.biases, 28, 28), peers, atol=1e-5, rtol=0)


def test_two_conventions_never_meet_silently(imported, tmp_path):
    """Splits of both conventions are refused naming the input order; so is a run of one applied to the other."""
    mixed = tmp_path / "mixed"
    import_inr_splits(MNIST / "mnist_splits.json", mixed, to_coords="rc", progress=False)
    shutil.copy(imported / "val.pt", mixed / "val.pt")
    with pytest.raises(ValueError, match=r"input order \(1, 0\) here, \(0, 1\) in train.pt.*\(x = col, y = row\) "
                                         r"coordinates here, \(row, col\) in train.pt.*convert_coordinates"):
        load_splits(mixed)
    from neuralgraph.train import TrainConfig, train

    torch.manual_seed(0)
    table = json.loads((MNIST / "mnist_splits.json").read_text())
    every = {k: table["train"][k] + table["val"][k] + table["test"][k] for k in ("path", "label")}
    table = {"train": every, "val": every, "test": table["test"]}     # every class of val / test in train
    (tmp_path / "all.json").write_text(json.dumps(table))
    native = tmp_path / "native"                         # the same INRs in this library's convention
    import_inr_splits(tmp_path / "all.json", native, root=MNIST, to_coords="rc", progress=False)
    train(TrainConfig(data=str(native), out=str(tmp_path / "run"), model="mlp", epochs=1, batch_size=8),
          progress=False, verbose=False)
    with pytest.raises(ValueError, match=r"another architecture than the run was trained on \(input order \(1, 0\)"):
        ng.predict(tmp_path / "run", imported / "test.pt")
    assert ng.predict(tmp_path / "run", native / "test.pt")["pred"].shape == (4,)


def test_statistics_file_is_checked_against_the_training_split(imported, tmp_path):
    """Their statistics.pth belongs to these splits and is recorded; a file computed the same way on other INRs
    (the test split) is refused, and normalisation uses this library's own statistics either way."""
    ds = INRDataset(imported / "train.pt")
    assert ds.meta["imported"]["statistics"].endswith("statistics.pth")
    assert "recomputed" in ds.meta["imported"]["statistics_use"]
    check_statistics(MNIST / "statistics.pth", ds.weights, ds.biases)
    test = INRDataset(imported / "test.pt")
    w = [x.transpose(1, 2).unsqueeze(-1) for x in test.weights]
    c = [x.unsqueeze(-1) for x in test.biases]
    torch.save({"weights": {"mean": [x.mean(0) for x in w], "std": [x.std(0) for x in w]},
                "biases": {"mean": [x.mean(0) for x in c], "std": [x.std(0) for x in c]}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth does not belong to these splits: weights.mean\[0\] entry"):
        import_inr_splits(MNIST / "mnist_splits.json", tmp_path / "o", statistics=tmp_path / "other.pth",
                          progress=False)
    assert not (tmp_path / "o" / "train.pt").exists()


def test_dwsnets_sine_inrs_import_with_their_coefficients_as_ssl_targets(tmp_path):
    """DWSNets' experiments/ssl files (coef, x, y beside the network) import safely; coef becomes the ssl
    task's targets and the network still computes their signal y on their grid x."""
    paths = import_inr_splits(SINES / "ssl_splits.json", tmp_path / "sines", progress=False)
    table = json.loads((SINES / "ssl_splits.json").read_text())
    for split in ("train", "val", "test"):
        ds = INRDataset(paths[split])
        assert ds.num_classes == 1 and ds.labels.tolist() == [0] * len(ds) and ds.meta["target_names"] == ["a", "b"]
        assert ds.arch == ng.inr.siren_architecture((1, 32, 32, 1), 30.0, 0.5)
        for i, p in enumerate(table[split]):
            network, extras = read_peer_file(SINES / p)
            assert set(extras) == {"coef", "x", "y"} and isinstance(extras["x"], np.ndarray)
            assert ds.meta["targets"][i].tolist() == pytest.approx(extras["coef"], rel=1e-6)
            model = ng.to_model(ds.batch([i]).get_example(0))
            x = torch.from_numpy(extras["x"]).float()[:, None]
            y = torch.from_numpy(extras["y"]).float()
            with torch.no_grad():
                mse = (model(x)[:, 0] - y).pow(2).mean()
            assert mse < 0.1, (p, float(mse))                # their fits stop at 1e-4 or after 500 epochs
    from neuralgraph.tasks.ssl import Contrastive
    from neuralgraph.train import TrainConfig, train

    splits = load_splits(tmp_path / "sines")
    assert Contrastive.targets(splits["train"]).shape == (4, 2)
    res = train(TrainConfig(data=str(tmp_path / "sines"), out=str(tmp_path / "run"), model="mlp", task="ssl",
                            epochs=1, batch_size=4), progress=False, verbose=False)
    assert {"probe_mse_a", "probe_mse_b"} <= set(res.test_metrics)


def test_peer_files_are_read_without_running_their_code(tmp_path):
    """numpy arrays (numpy 1 or 2 names) are allowed; any other global is refused, naming it."""
    path = SINES / "ssl-inrs" / "model_0.pth"
    network, extras = read_peer_file(path)
    assert list(network) == ["seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias", "seq.2.weight",
                             "seq.2.bias"]
    g = from_state_dict(network, ng.inr.siren_architecture((1, 32, 32, 1), 30.0, 0.5))
    assert g.num_nodes == 66
    # the same file as numpy < 2 pickles it (numpy.core instead of numpy._core): the only difference
    import zipfile

    old = tmp_path / "numpy1.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info, data)
    _, extras_old = read_peer_file(old)
    assert np.array_equal(extras_old["y"], extras["y"])
    torch.save({"seq.0.weight": torch.zeros(2, 1), "seq.0.bias": torch.zeros(2), "hook": Path("x")},
               tmp_path / "code.pth")
    with pytest.raises(ValueError, match=r"code.pth: not a readable state dict .*pathlib"):
        read_peer_file(tmp_path / "code.pth")


def test_the_convention_travels_with_the_architecture(imported, tmp_path):
    """A Reorder survives to_model -> to_graph, ng.save / ng.load and the functional interpreter (probes)."""
    from neuralgraph.functional import forward

    ds = INRDataset(imported / "val.pt")
    g = ds.batch([0]).get_example(0)
    model = ng.to_model(g)
    assert isinstance(model[0], ng.Reorder) and model[0].order == (1, 0)
    again = ng.to_graph(model)
    assert again.arch == ds.arch and torch.equal(again.edge_attr, g.edge_attr) and torch.equal(again.x, g.x)
    ng.save(g, tmp_path / "g.pt")
    assert ng.load(tmp_path / "g.pt").arch == ds.arch
    W, b = ds.params([0])
    grid = image_grid(28, 28)
    with torch.no_grad():
        torch.testing.assert_close(forward(ds.arch, [w[0] for w in W], [x[0] for x in b], None, grid), model(grid))
