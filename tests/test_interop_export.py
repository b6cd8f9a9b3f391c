"""export-inrs: datasets in the layout the DWSNets / neural-graphs loaders read, and the round trips both ways.

The exported files are read back here as their loaders document the format: ``json.load(splits)[split]``
gives ``{"path": [...], "label": [...]}`` (or a list of paths for sine INRs), ``torch.load(path)`` a state
dict whose ``weight`` / ``bias`` entries, in order, are the layers (``[out, in]``), ``int(label)`` the class,
and ``coef`` the sine INR's targets; an image is rendered on their ``make_coordinates`` grid plus 0.5.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import neuralgraph as ng
from neuralgraph.cli import main
from neuralgraph.exporters import export_inr_splits
from neuralgraph.importers import import_inr_splits
from neuralgraph.inr import INRDataset, build_inr_splits, image_grid, render, siren_forward

PEERS = Path(__file__).parent / "data" / "peer_inrs"


def their_grid(n: int) -> torch.Tensor:
    """DWSNets' make_coordinates((n, n)): np.meshgrid (indexing "xy") of x and y, stacked as (x, y)."""
    x, y = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    return torch.from_numpy(np.stack([x.flatten(), y.flatten()]).T).float()


def read_as_they_do(out: Path, split: str):
    """``(weights, biases, labels or coefs)`` of one split, read as their INRDataset / SineINR2CoefDataset do."""
    entry = json.loads((out / "splits.json").read_text())[split]
    paths = entry if isinstance(entry, list) else entry["path"]
    W, b, y = [], [], []
    for i, p in enumerate(paths):
        sd = torch.load(Path(out) / p, map_location="cpu")              # absolute, or relative to out
        W.append([v for k, v in sd.items() if "weight" in k])
        b.append([v for k, v in sd.items() if "bias" in k])
        y.append(sd["coef"] if isinstance(entry, list) else int(entry["label"][i]))
    return ([torch.stack(t) for t in zip(*W)], [torch.stack(t) for t in zip(*b)], y)


def test_peer_files_survive_import_and_export_bit_for_bit(tmp_path):
    """Their files -> import (their convention kept) -> export: the same tensors under their key names, labels
    as their scripts write them, statistics as theirs, the same images; and import of the export = the import."""
    src = PEERS / "mnist"
    import_inr_splits(src / "mnist_splits.json", tmp_path / "ng", progress=False)
    res = export_inr_splits(tmp_path / "ng", tmp_path / "out", progress=False)
    assert res["conversions"] == [] and res["counts"] == {"train": 8, "val": 2, "test": 4}
    theirs, ours = json.loads((src / "mnist_splits.json").read_text()), json.loads(res["splits"].read_text())
    renders = torch.load(src / "renders.pt")
    for split in ("train", "val", "test"):
        assert ours[split]["label"] == theirs[split]["label"] and all(isinstance(y, str) for y in ours[split]["label"])
        for p, q in zip(theirs[split]["path"], ours[split]["path"]):
            a, b = torch.load(src / p), torch.load(q)
            assert list(b) == ["seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias", "seq.2.weight",
                               "seq.2.bias"] and list(a) == list(b)
            assert all(torch.equal(a[k], b[k]) and b[k].dtype == torch.float32 for k in a)
            assert Path(q).stat().st_size < 20_000                  # one INR per file, not the whole stack
        W, b, labels = read_as_they_do(tmp_path / "out", split)
        images = (siren_forward(W, b, their_grid(28), 30.0) + 0.5).reshape(-1, 28, 28)
        torch.testing.assert_close(images, renders[split][:, 0], atol=1e-5, rtol=0)
    stats, want = torch.load(res["statistics"]), torch.load(src / "statistics.pth")
    for part in ("weights", "biases"):
        for k in ("mean", "std"):
            for x, y in zip(stats[part][k], want[part][k]):
                assert x.shape == y.shape
                torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)
    import_inr_splits(res["splits"], tmp_path / "again", statistics=res["statistics"], progress=False)
    for split in ("train", "val", "test"):
        a, b = INRDataset(tmp_path / "ng" / f"{split}.pt"), INRDataset(tmp_path / "again" / f"{split}.pt")
        assert a.arch == b.arch and torch.equal(a.labels, b.labels)
        assert all(torch.equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))


def test_native_inrs_export_in_their_convention_and_come_back_exactly(tmp_path):
    """INRs fitted here ((row, col), w0 30): exported with the first-layer columns swapped so that their grid
    renders the same image; imported back with to_coords='rc': the original tensors bit for bit."""
    build_inr_splits("digits", tmp_path / "native", n_train=20, n_val=10, n_test=10, steps=3, w0=30.0, progress=False)
    res = export_inr_splits(tmp_path / "native", tmp_path / "out", relative_paths=True, progress=False)
    assert res["conversions"] == ["(row, col) image coordinates -> DWSNets' (x = col, y = row): first-layer "
                                  "columns swapped"]
    table = json.loads(res["splits"].read_text())
    assert not Path(table["test"]["path"][0]).is_absolute()
    native = INRDataset(tmp_path / "native" / "test.pt")
    W, b, labels = read_as_they_do(tmp_path / "out", "test")
    assert labels == native.labels.tolist()
    torch.testing.assert_close((siren_forward(W, b, their_grid(8), 30.0) + 0.5).reshape(-1, 8, 8),
                               render(native.weights, native.biases, 8, 8), atol=1e-6, rtol=0)
    import_inr_splits(res["splits"], tmp_path / "back", to_coords="rc", progress=False)
    for split in ("train", "val", "test"):
        a, b = INRDataset(tmp_path / "native" / f"{split}.pt"), INRDataset(tmp_path / "back" / f"{split}.pt")
        assert b.arch == a.arch and torch.equal(a.labels, b.labels)
        assert all(torch.equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))


def test_export_folds_w0_and_offset_into_their_inr(tmp_path):
    """Digits INRs (w0 10) and sine INRs fitted here (no output offset): their INR class fixes w0 30 and +0.5,
    so the weights are rescaled and the last bias shifted; their code then computes the same functions."""
    build_inr_splits("digits", tmp_path / "digits", n_train=20, n_val=10, n_test=10, steps=3, progress=False)
    res = export_inr_splits(tmp_path / "digits", tmp_path / "d_out", progress=False)
    assert any(n.startswith("w0 10 -> 30") for n in res["conversions"])
    native = INRDataset(tmp_path / "digits" / "val.pt")
    W, b, _ = read_as_they_do(tmp_path / "d_out", "val")
    torch.testing.assert_close((siren_forward(W, b, their_grid(8), 30.0) + 0.5).reshape(-1, 8, 8),
                               render(native.weights, native.biases, 8, 8, w0=10.0), atol=1e-5, rtol=0)
    from neuralgraph.inr.sines import build_sine_splits, sine_grid

    build_sine_splits(tmp_path / "sines", n_train=4, n_val=2, n_test=2, steps=3, progress=False)
    res = export_inr_splits(tmp_path / "sines", tmp_path / "s_out", progress=False)
    assert res["conversions"] == ["output offset 0 -> 0.5: last bias -0.5"]
    table = json.loads(res["splits"].read_text())
    assert isinstance(table["train"], list) and set(table) == {"train", "val", "test"}
    native = INRDataset(tmp_path / "sines" / "test.pt")
    W, b, coefs = read_as_they_do(tmp_path / "s_out", "test")
    assert coefs == native.meta["targets"].tolist()
    x = sine_grid(100)[:, None]
    torch.testing.assert_close(siren_forward(W, b, x, 30.0) + 0.5, siren_forward(native.weights, native.biases, x,
                                                                                 30.0), atol=1e-5, rtol=0)
    import_inr_splits(res["splits"], tmp_path / "s_back", progress=False)
    back = INRDataset(tmp_path / "s_back" / "test.pt")
    assert torch.equal(back.meta["targets"], native.meta["targets"])


def test_export_is_atomic_and_never_overwrites_silently(tmp_path, monkeypatch):
    import_inr_splits(PEERS / "mnist" / "mnist_splits.json", tmp_path / "ng", progress=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="exists and is not empty; pass overwrite=True"):
        export_inr_splits(tmp_path / "ng", out, progress=False)
    # a failure half-way (the 5th file cannot be written) leaves the old directory as it was and no staging
    import neuralgraph.exporters as exporters

    calls, real_save = [], torch.save

    def failing_save(obj, path, *a, **kw):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(exporters.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        export_inr_splits(tmp_path / "ng", out, overwrite=True, progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ng", "out"]
    export_inr_splits(tmp_path / "ng", out, overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["inrs", "splits.json", "statistics.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ng", "out"]


def test_cli_import_and_export(tmp_path, capsys):
    src = PEERS / "mnist"
    assert main(["import-inrs", "--splits", str(src / "mnist_splits.json"), "--out", str(tmp_path / "ng"),
                 "--statistics", str(src / "statistics.pth"), "--image-shape", "28", "28", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "coordinates: (x = col, y = row), as in the files" in out
    assert "normalisation uses this library's statistics, recomputed" in out
    assert main(["import-inrs", "--splits", str(src / "mnist_splits.json"), "--out", str(tmp_path / "rc"),
                 "--to-coords", "rc", "--quiet"]) == 0
    assert "coordinates: (row, col) (converted)" in capsys.readouterr().out
    assert main(["export-inrs", "--data", str(tmp_path / "rc"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "train 8 INRs, val 2 INRs, test 4 INRs" in out and "converted: (row, col) image coordinates" in out
    assert main(["export-inrs", "--data", str(tmp_path / "rc"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert ng.inr.coords.coordinate_convention(INRDataset(tmp_path / "ng" / "train.pt").arch) == "xy"
    assert torch.equal(INRDataset(tmp_path / "rc" / "train.pt").weights[0],
                       INRDataset(tmp_path / "ng" / "train.pt").weights[0].flip(-1))
    assert image_grid(2, 2).tolist() == [[-1, -1], [-1, 1], [1, -1], [1, 1]]
