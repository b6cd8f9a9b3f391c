"""Using trained runs (predict / embed / evaluate, training statistics) and importing DWSNets-layout INRs."""
from __future__ import annotations

import csv
import json
import shutil

import matplotlib
import pytest
import torch
from torch import nn

import neuralgraph as ng
from neuralgraph.interop import from_state_dict
import neuralgraph.visualize  # noqa: F401  (ng.visualize.draw)
from neuralgraph.cli import main
from neuralgraph.inference import evaluate, open_data, training_stats
from neuralgraph.inr import INRDataset, build_inr_splits
from neuralgraph.inr.stats import _normalize_batch
from neuralgraph.train import TrainConfig, load_checkpoint, save_checkpoint, train
from neuralgraph.train.checkpoint import inference_state

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small real run: NG-GNN on digit INRs (a few seconds)."""
    root = tmp_path_factory.mktemp("inference")
    data = root / "data"
    build_inr_splits("digits", data, n_train=60, n_val=20, n_test=20, steps=20, progress=False)
    cfg = TrainConfig(data=str(data), out=str(root / "run"), model="nggnn", epochs=2, batch_size=32, lr=2e-3,
                      model_kwargs={"hidden": 16, "num_layers": 2})
    res = train(cfg, progress=False, verbose=False)
    return res, data


def test_predict_normalises_with_the_training_statistics(run):
    res, data = run
    out = ng.predict(res.run_dir, data / "test.pt")
    test = INRDataset(data / "test.pt")
    assert out["probs"].shape == (len(test), 10) and torch.allclose(out["probs"].sum(1), torch.ones(len(test)))
    assert torch.equal(out["labels"], test.labels)
    # the same numbers as the trainer's own test evaluation
    acc = float((out["pred"] == out["labels"]).double().mean())
    assert acc == pytest.approx(res.test_acc)
    metrics = evaluate(res.run_dir, data / "test.pt")
    assert metrics["acc"] == pytest.approx(res.test_acc) and metrics["loss"] == pytest.approx(res.test_metrics["loss"])
    # and by hand: train statistics, not the test file's own
    model = res.classifier
    train_stats = INRDataset(data / "train.pt").stats
    b = test.batch(slice(None), normalize=False)
    _normalize_batch(b, train_stats)
    with torch.no_grad():
        assert torch.allclose(model(b).softmax(1), out["probs"], atol=1e-5)
    own = test.batch(slice(None), normalize=True)             # the test file's own statistics: other inputs
    assert not torch.allclose(own.edge_attr, b.edge_attr)


def test_statistics_stored_in_the_checkpoint_are_used_when_the_data_are_gone(run, tmp_path):
    res, data = run
    run_dir = tmp_path / "run"
    shutil.copytree(res.run_dir, run_dir)
    moved = tmp_path / "data"
    shutil.copytree(data, moved)
    ck = load_checkpoint(run_dir / "best.pt")
    ck["config"]["data"] = str(tmp_path / "gone")             # the training data moved away
    # the trainer stored the training statistics (inference_state): inference needs no training data
    splits = {"train": INRDataset(moved / "train.pt")}
    normalize, stats = training_stats(ck)
    assert normalize and torch.equal(stats["weight_std"], splits["train"].stats["weight_std"])
    save_checkpoint({k: v for k, v in ck.items() if k != "version"}, run_dir / "best.pt")
    out = ng.predict(run_dir, moved / "test.pt")
    ref = ng.predict(res.run_dir, data / "test.pt")
    assert torch.equal(out["pred"], ref["pred"]) and torch.allclose(out["probs"], ref["probs"])
    # a checkpoint without them (written before they were stored) and no training data: refused
    old = {k: v for k, v in ck.items() if k not in ("version", "inference")}
    save_checkpoint(old, run_dir / "best.pt")
    with pytest.raises(ValueError, match="stores no training statistics"):
        ng.predict(run_dir, moved / "test.pt")
    old.update(inference_state(splits, normalize=True))
    save_checkpoint(old, run_dir / "best.pt")
    assert torch.equal(ng.predict(run_dir, moved / "test.pt")["pred"], ref["pred"])


def test_embed_returns_invariant_penultimate_features(run):
    res, data = run
    emb = ng.embed(res.run_dir, data / "test.pt")
    assert emb.shape[0] == 20 and emb.dim() == 2 and emb.shape[1] == 16       # the head's hidden width
    again, labels = ng.embed(res.run_dir, data / "test.pt", return_labels=True)
    assert torch.equal(again, emb) and torch.equal(labels, INRDataset(data / "test.pt").labels)
    logits = ng.embed(res.run_dir, data / "test.pt", layer="output")
    last = res.classifier.head.mlp[-1]                         # NG-GNN: the invariant head's last layer
    with torch.no_grad():
        assert torch.allclose(last(emb), logits, atol=1e-5)
    # invariance: permuting the hidden neurons of the INRs leaves the embeddings unchanged
    test = open_data(data / "test.pt", load_checkpoint(res.run_dir / "best.pt"))
    b = test.batch(slice(None))
    seen = {}
    h = last.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    with torch.no_grad():
        res.classifier(ng.permute_hidden(b, torch.Generator().manual_seed(0))[0])
    h.remove()
    assert torch.allclose(seen["x"], emb, atol=1e-4)


def test_refuses_data_of_another_architecture(run, tmp_path):
    res, _ = run
    other = tmp_path / "other"
    build_inr_splits("digits", other, n_train=20, n_val=10, n_test=10, steps=2, widths=(2, 8, 1), progress=False)
    with pytest.raises(ValueError, match="architecture"):
        ng.predict(res.run_dir, other / "test.pt")


@pytest.mark.parametrize("task", ["ssl", "edit"])
def test_evaluate_runs_of_tasks_that_read_their_data(run, tmp_path, task):
    """evaluate sets up the task from the data and the run's training statistics: ssl's views, edit's images
    (both failed with a raw traceback before); the numbers are the trainer's own test metrics."""
    _, digits = run
    data = digits
    if task == "ssl":
        from neuralgraph.inr.sines import build_sine_splits

        data = tmp_path / "sines"
        build_sine_splits(data, 8, 4, 4, steps=5, progress=False)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), task=task, epochs=1, batch_size=4,
                      model="mlp" if task == "ssl" else "nggnn",
                      model_kwargs={"hidden": (16,)} if task == "ssl" else {"hidden": 8, "num_layers": 1})
    res = train(cfg, progress=False, verbose=False)
    metrics = evaluate(res.run_dir, data / "test.pt")
    assert metrics["loss"] == pytest.approx(res.test_metrics["loss"], rel=1e-5)


def test_cli_predict_embed_evaluate(run, tmp_path, capsys):
    res, data = run
    assert main(["predict", "--run", str(res.run_dir), "--data", str(data), "--out", str(tmp_path / "p.csv")]) == 0
    assert main(["predict", "--run", str(res.run_dir), "--data", str(data), "--out", str(tmp_path / "q.csv"),
                 "--confusion", str(tmp_path / "cm.png")]) == 0
    assert (tmp_path / "cm.png").stat().st_size > 1000
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 20 and set(rows[0]) >= {"index", "label", "pred", "prob_0", "prob_9"}
    ref = ng.predict(res.run_dir, data / "test.pt")
    assert [int(r["pred"]) for r in rows] == ref["pred"].tolist()
    assert main(["embed", "--run", str(res.run_dir), "--data", str(data / "test.pt"), "--out",
                 str(tmp_path / "e.pt")]) == 0
    saved = torch.load(tmp_path / "e.pt")
    assert torch.allclose(saved["embeddings"], ng.embed(res.run_dir, data / "test.pt"))
    assert torch.equal(saved["labels"], INRDataset(data / "test.pt").labels)
    assert main(["evaluate", "--run", str(res.run_dir), "--data", str(data / "val.pt")]) == 0
    out = capsys.readouterr().out
    assert f"acc {res.best_val_acc:.2%}" in out
    assert main(["evaluate", "--run", str(res.run_dir), "--data", str(data), "--split", "val"]) == 0
    assert f"acc {res.best_val_acc:.2%}" in capsys.readouterr().out        # DIR/val.pt
    assert main(["predict", "--run", str(tmp_path / "nope"), "--data", str(data)]) == 2
    assert "run not found" in capsys.readouterr().err


def test_extend_a_finished_run(run, tmp_path, capsys):
    res, _ = run
    run_dir = tmp_path / "run"
    shutil.copytree(res.run_dir, run_dir)
    assert main(["extend", "--run", str(run_dir), "--epochs", "2"]) == 2
    assert "epochs must be an int above the run's 2" in capsys.readouterr().err
    assert main(["extend", "--run", str(run_dir), "--epochs", "3", "--quiet"]) == 0
    ck = load_checkpoint(run_dir / "last.pt")
    assert ck["epoch"] == 3 and ck["config"]["epochs"] == 3
    assert ck["history"][:2] == res.history                  # the first two epochs are kept as they were
    assert json.loads((run_dir / "results.json").read_text())["epochs"] == 3
    assert load_checkpoint(res.run_dir / "last.pt")["epoch"] == 2    # the original run is untouched


# ----------------------------------------------------------------------------
# DWSNets / neural-graphs layout
# ----------------------------------------------------------------------------

class SeqINR(nn.Module):
    """Their INR module naming: ``seq.0.weight``, ``seq.0.bias``, ..."""

    def __init__(self, widths=(2, 32, 32, 1)):
        super().__init__()
        self.seq = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))


def write_dwsnets_layout(root, counts=(("train", 12), ("val", 4), ("test", 5)), widths=(2, 32, 32, 1)):
    """A small dataset in their layout: one .pth per INR under class folders, a splits JSON, statistics."""
    torch.manual_seed(0)
    table, weights = {}, {}
    for split, n in counts:
        table[split] = {"path": [], "label": []}
        for i in range(n):
            label = i % 10
            p = root / "inrs" / f"mnist_png_{split}" / str(label) / f"{i}.pth"
            p.parent.mkdir(parents=True, exist_ok=True)
            sd = SeqINR(widths).state_dict()
            torch.save(sd, p)
            table[split]["path"].append(str(p.relative_to(root)))
            table[split]["label"].append(label)
            weights[(split, i)] = sd
    (root / "splits.json").write_text(json.dumps(table))
    W = [torch.stack([weights[("train", i)][f"seq.{m}.weight"].T.unsqueeze(-1) for i in range(counts[0][1])])
         for m in range(len(widths) - 1)]
    B = [torch.stack([weights[("train", i)][f"seq.{m}.bias"].unsqueeze(-1) for i in range(counts[0][1])])
         for m in range(len(widths) - 1)]
    torch.save({"weights": {"mean": [w.mean(0) for w in W], "std": [w.std(0) for w in W]},
                "biases": {"mean": [b.mean(0) for b in B], "std": [b.std(0) for b in B]}}, root / "statistics.pth")
    return weights


def test_import_dwsnets_layout(tmp_path, capsys):
    from neuralgraph.importers import import_inr_splits
    from neuralgraph.inr.coords import with_coordinates

    weights = write_dwsnets_layout(tmp_path)
    paths = import_inr_splits(tmp_path / "splits.json", tmp_path / "out", statistics=tmp_path / "statistics.pth",
                              image_shape=(28, 28), progress=False)
    ds = INRDataset(paths["test"])
    assert len(ds) == 5 and ds.num_classes == 10 and ds.labels.tolist() == [0, 1, 2, 3, 4]
    assert ds.arch == with_coordinates(ng.inr.siren_architecture((2, 32, 32, 1), w0=30.0, offset=0.5), "xy")
    # the graph of INR 3 rebuilds into the module their state dict describes
    sd = weights[("test", 3)]
    model = ng.to_model(ds.batch([3]).get_example(0))
    ref = from_state_dict(sd, ds.arch)
    x = torch.rand(9, 2)
    assert torch.equal(model(x), ng.to_model(ref)(x))
    # train / val / test load as one dataset that training accepts
    from neuralgraph.train import load_splits

    splits = load_splits(tmp_path / "out")
    assert [len(splits[s]) for s in ("train", "val", "test")] == [12, 4, 5]
    # the CLI does the same
    assert main(["import-inrs", "--splits", str(tmp_path / "splits.json"), "--out", str(tmp_path / "cli"),
                 "--quiet"]) == 0
    assert torch.equal(INRDataset(tmp_path / "cli" / "train.pt").weights[1], splits["train"].weights[1])


def test_import_refuses_mixed_architectures_and_bad_statistics(tmp_path):
    from neuralgraph.importers import import_inr_splits

    write_dwsnets_layout(tmp_path)
    table = json.loads((tmp_path / "splits.json").read_text())
    odd = tmp_path / "odd.pth"
    torch.save(SeqINR((2, 16, 1)).state_dict(), odd)
    table["val"]["path"][1] = str(odd)
    (tmp_path / "mixed.json").write_text(json.dumps(table))
    with pytest.raises(ValueError, match="odd.pth: INR of widths"):
        import_inr_splits(tmp_path / "mixed.json", tmp_path / "o1", progress=False)
    torch.save({"weights": {"mean": [torch.zeros(3)]}}, tmp_path / "bad_stats.pth")
    with pytest.raises(ValueError, match="bad_stats.pth: expected weights.mean"):
        import_inr_splits(tmp_path / "splits.json", tmp_path / "o2", statistics=tmp_path / "bad_stats.pth",
                          progress=False)


def test_import_follows_the_one_directory_one_dataset_rules(tmp_path):
    """A fitted dataset is not overwritten without overwrite=True; with it, the import replaces it whole
    (manifest included), and a failing import leaves the directory as it was."""
    from neuralgraph.importers import import_inr_splits

    write_dwsnets_layout(tmp_path)
    out = tmp_path / "data"
    build_inr_splits("digits", out, n_train=20, n_val=20, n_test=20, steps=2, progress=False)
    fitted = (out / "train.pt").read_bytes()
    with pytest.raises(ValueError, match=r"source 'digits' there, 'dwsnets-import' now.*import-inrs --overwrite"):
        import_inr_splits(tmp_path / "splits.json", out, progress=False)
    assert (out / "train.pt").read_bytes() == fitted
    table = json.loads((tmp_path / "splits.json").read_text())
    table["test"]["label"][-1] = 12                          # the last split fails: nothing may change
    (tmp_path / "bad.json").write_text(json.dumps(table))
    with pytest.raises(ValueError, match="label 12"):
        import_inr_splits(tmp_path / "bad.json", out, overwrite=True, progress=False)
    assert (out / "train.pt").read_bytes() == fitted and not (out / ".overwrite" / "train.pt").exists()
    import_inr_splits(tmp_path / "splits.json", out, overwrite=True, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["source"] == "dwsnets-import" and not (out / ".overwrite").exists()
    from neuralgraph.train import load_splits

    assert [len(d) for d in load_splits(out).values()] == [12, 4, 5]
    import_inr_splits(tmp_path / "splits.json", out, progress=False)      # the same import: accepted again
    assert load_splits(out)["train"].meta["source"] == "dwsnets-import"
    del table["val"]
    table["test"]["label"][-1] = 1
    (tmp_path / "noval.json").write_text(json.dumps(table))
    with pytest.raises(ValueError, match=r"holds another import \(splits .*; val_from_train 0 there, 3 now"):
        import_inr_splits(tmp_path / "noval.json", out, val_from_train=3, progress=False)


# ----------------------------------------------------------------------------
# pictures: graph drawings with colour bars / legend / per-layer scale, confusion matrices
# ----------------------------------------------------------------------------


def test_draw_has_colour_bars_legend_and_per_layer_scale(tmp_path):
    from neuralgraph.visualize import colour_values

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].weight.mul_(100.0)                  # a layer on another scale
    g = ng.to_graph(model)
    w, b = colour_values(g)
    assert torch.equal(w, g.edge_attr[:, 0]) and torch.equal(b, g.x[:, 0])
    w, b = colour_values(g, scale="layer")
    for m in (1, 2):
        assert w[g.edge_layer == m].abs().max() == 1.0 and b[g.node_layer == m].abs().max() == 1.0
    assert torch.allclose(w[g.edge_layer == 2] * g.edge_attr[g.edge_layer == 2, 0].abs().max(),
                          g.edge_attr[g.edge_layer == 2, 0])
    ax = ng.visualize.draw(g, path=tmp_path / "n.png", scale="layer")
    labels = [a.get_ylabel() for a in ax.figure.axes[1:]]
    assert labels == ["weight / layer max", "bias / layer max"]
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == "input neuron"
    res = nn.Sequential(nn.Linear(3, 4), ng.Residual(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 1))
    ax = ng.visualize.draw(ng.to_graph(res), legend=True, colorbar=False)
    assert len(ax.figure.axes) == 1 and "residual (weight 1)" in [t.get_text() for t in ax.get_legend().get_texts()]
    with __import__("pytest").raises(ValueError, match="scale must be"):
        colour_values(g, scale="row")
    __import__("matplotlib.pyplot").pyplot.close("all")


def test_confusion_matrix_plot(tmp_path):
    from neuralgraph.train.plots import confusion_matrix, plot_confusion_matrix

    true = torch.tensor([0, 0, 1, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 2])
    cm = confusion_matrix(pred, true, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    path = plot_confusion_matrix(pred, true, tmp_path / "cm.png", 4, title="digits")
    assert __import__('matplotlib.pyplot').pyplot.imread(path).shape[0] > 100
    with __import__("pytest").raises(ValueError, match=r"in \[0, 3\)"):
        confusion_matrix(pred, torch.tensor([0, 0, 1, 1, 1, 3]), 3)
