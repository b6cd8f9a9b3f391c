"""Training end to end on real (small) digit-INR datasets: resume, model selection, files, errors."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import neuralgraph as ng
from neuralgraph.augment import permute_hidden_stacked
from neuralgraph.inr import INRDataset, build_inr_splits, render, save_inr_dataset
from neuralgraph.train import (FlatMLP, TrainConfig, build_model, evaluate_classifier, flat_params, load_checkpoint,
                               load_splits, load_trained, num_params, train)
from neuralgraph.train.registry import MODELS

from locking import locked_by_another_process


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 / 100 / 100 digit INRs (100 fit steps each), shared by the module."""
    out = tmp_path_factory.mktemp("digits_inrs")
    build_inr_splits("digits", out, n_train=300, n_val=100, n_test=100, steps=100, progress=False)
    return out


def cfg(data, out, **kw) -> TrainConfig:
    base = dict(model="mlp", epochs=3, batch_size=32, lr=1e-3, seed=0, model_kwargs={"hidden": (64, 64)})
    base.update(kw)
    return TrainConfig(data=str(data), out=str(out), **base)


def run(c: TrainConfig, **kw):
    torch.set_num_threads(1)          # same thread count for runs that are compared bit for bit
    return train(c, progress=False, verbose=False, **kw)


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------
# resume, model selection, files
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("model,extra", [
    ("mlp-aug", {"augment": {"noise_std": 0.01, "dropout": 0.05}, "model_kwargs": {"hidden": (64,), "dropout": 0.2}}),
    ("dwsnet", {"model_kwargs": {"hidden": 8, "num_layers": 2, "dropout": 0.1}, "batch_size": 64}),
])
def test_resume_is_bit_exact(data, tmp_path, model, extra):
    """2 epochs + resume to 4 == 4 epochs straight (weights, optimizer, metrics, RNG-driven augmentation)."""
    straight = run(cfg(data, tmp_path / "a", model=model, epochs=4, **extra))
    first = run(cfg(data, tmp_path / "b", model=model, epochs=4, **extra), stop_after_epoch=2)
    assert not first.finished and first.epochs_done == 2 and first.test_acc is None
    assert not (tmp_path / "b" / "results.json").exists()
    resumed = run(cfg(data, tmp_path / "b", model=model, epochs=4, **extra), resume=True)
    assert resumed.finished and resumed.epochs_done == 4
    A, B = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert state_equal(A["model"], B["model"])
    sa, sb = A["optimizer"]["state"], B["optimizer"]["state"]
    assert all(state_equal(sa[k], sb[k]) for k in sa)
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("time", "data_s", "step_s")} for r in h]
    assert strip(straight.history) == strip(resumed.history)
    assert straight.test_acc == resumed.test_acc and straight.best_epoch == resumed.best_epoch


def test_run_directory_and_model_selection(data, tmp_path):
    res = run(cfg(data, tmp_path, epochs=4, model="mlp", lr=3e-3))
    files = {p.name for p in tmp_path.iterdir()}
    assert {"last.pt", "best.pt", "metrics.csv", "results.json", "learning_curves.png",
            "reconstructions.png", "confusion.png", "config.json"} <= files
    assert not any(name.endswith(".tmp") for name in files)
    assert (tmp_path / "learning_curves.png").stat().st_size > 10_000
    assert (tmp_path / "reconstructions.png").stat().st_size > 10_000
    assert (tmp_path / "confusion.png").stat().st_size > 10_000

    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time", "data_s",
                             "step_s"]
    times = [float(r["time"]) for r in rows]
    assert times == sorted(times) and times[0] > 0

    # best epoch = highest validation accuracy, ties broken by lower validation loss
    key = lambda h: (h["val_acc"], -h["val_loss"])
    assert res.best_epoch == max(res.history, key=key)["epoch"]

    # the reported test accuracy is that of the best-validation weights, recomputed independently
    model, ck = load_trained(tmp_path)
    assert ck["epoch"] == res.best_epoch
    splits = load_splits(data)
    loss, acc = evaluate_classifier(model, splits["test"])
    assert acc == pytest.approx(res.test_acc) and loss == pytest.approx(res.test_loss, rel=1e-5)
    y = splits["test"].labels
    logits = model(splits["test"].batch(torch.arange(len(y))))
    assert (logits.argmax(1) == y).float().mean().item() == pytest.approx(acc)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test_acc"] == pytest.approx(res.test_acc) and results["best_epoch"] == res.best_epoch
    assert results["n"] == {"train": 300, "val": 100, "test": 100}

    # re-running a finished run with resume only re-evaluates
    again = run(cfg(data, tmp_path, epochs=4, model="mlp", lr=3e-3), resume=True)
    assert again.history == res.history and again.test_acc == res.test_acc


def test_warmup_then_cosine(data, tmp_path):
    res = run(cfg(data, tmp_path, epochs=5, lr=2e-3, warmup_epochs=2.0))
    lrs = [h["lr"] for h in res.history]
    # the last step of epoch 1 is halfway through the linear warmup, that of epoch 2 at the peak
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[1] == pytest.approx(2e-3)
    assert lrs[1] > lrs[2] > lrs[3] > lrs[4]
    steps = math.ceil(300 / 32)
    assert lrs[4] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi * (3 * steps - 1) / (3 * steps))))


def test_training_fits_the_training_set(data, tmp_path):
    """The optimisation loop works: the flat MLP memorises 300 INRs (train loss falls, accuracy ~100%)."""
    res = run(cfg(data, tmp_path, epochs=8, lr=3e-3, model_kwargs={"hidden": (256, 256)}))
    assert res.history[-1]["train_loss"] < 0.2 * res.history[0]["train_loss"]
    assert res.history[-1]["train_acc"] > 0.95


def test_nggnn_generalises(data, tmp_path):
    """NG-GNN (probe features) learns digit classes from 300 INRs well above chance (10%).

    The other equivariant models' training is tested on their own (loss falls); from
    300 INRs and a few epochs only the probed model is reliably far above chance.
    """
    res = run(cfg(data, tmp_path, model="nggnn", epochs=8, lr=3e-3,
                  model_kwargs={"hidden": 32, "num_layers": 2}))
    assert res.history[-1]["train_loss"] < 0.85 * res.history[0]["train_loss"]
    assert res.best_val_acc > 0.25 and res.test_acc > 0.25


# ----------------------------------------------------------------------------
# data and models
# ----------------------------------------------------------------------------

def test_val_and_test_use_train_statistics(data):
    splits = load_splits(data)
    assert splits["val"].stats is splits["train"].stats and splits["test"].stats is splits["train"].stats
    own = INRDataset(data / "val.pt", normalize=True)
    assert not torch.equal(own.stats["weight_std"], splits["train"].stats["weight_std"])
    b = splits["val"].batch(torch.arange(5))
    w, _ = splits["val"].params(torch.arange(5))
    st = splits["train"].stats
    expect = (w[1] - st["weight_mean"][1]) / (st["weight_std"][1] + 1e-8)
    torch.testing.assert_close(ng.batch_to_stacked(b)[0][1], expect)


def test_flat_params_and_permutation_augmentation(data):
    ds = INRDataset(data / "test.pt")
    idx = torch.arange(16)
    b = ds.batch(idx)
    w, bias = ds.params(idx)
    flat = flat_params(b)
    assert flat.shape == (16, num_params(ds.arch)) == (16, 2 * 32 + 32 + 32 * 32 + 32 + 32 + 1)
    expect = torch.cat([t.reshape(16, -1) for pair in zip(w, bias) for t in pair], 1)
    assert torch.equal(flat, expect)
    # augmented vectors are other weight vectors of the *same* functions
    g = torch.Generator().manual_seed(3)
    perm = flat_params(b, permute=True, generator=g)
    assert not torch.allclose(perm, flat)
    g = torch.Generator().manual_seed(3)
    pw, pb = permute_hidden_stacked(w, bias, g)
    assert torch.equal(perm, torch.cat([t.reshape(16, -1) for pair in zip(pw, pb) for t in pair], 1))
    torch.testing.assert_close(render(pw, pb, 8, 8), render(w, bias, 8, 8), atol=1e-5, rtol=0)
    # sorted values per layer are unchanged: a permutation, not noise
    assert torch.equal(perm.sort(1).values, flat.sort(1).values)


def test_flat_mlp_modes_and_batch_independence(data):
    ds = INRDataset(data / "test.pt", normalize=False)
    torch.manual_seed(0)
    m = FlatMLP(10, ds.arch, hidden=(32,), permute_augment=True)
    b = ds.batch(torch.arange(8))
    m.eval()
    out = m(b)
    assert out.shape == (8, 10)
    torch.testing.assert_close(m(ds.batch(torch.arange(3))), out[:3])          # batch-independent
    m.train()
    assert not torch.allclose(m(b), out)                                       # augmentation active
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    other = ng.stacked_to_batch([torch.randn(2, 16, 2), torch.randn(2, 1, 16)], [torch.randn(2, 16), torch.randn(2, 1)],
                                ng.mlp_architecture([2, 16, 1], "sine", w0=30))
    with pytest.raises(ValueError, match="other parameter shapes"):
        m(other)


def test_registry():
    assert set(MODELS) == {"dwsnet", "nggnn", "ngt", "mlp", "mlp-aug"}
    arch = ng.mlp_architecture([2, 8, 1], "sine", w0=30)
    assert build_model("mlp-aug", 10, arch=arch).permute_augment
    assert not build_model("mlp", 10, arch=arch).permute_augment
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", 10, arch=arch)
    with pytest.raises(ValueError, match="no hyper-parameter.*'widht'.*accepted"):
        build_model("mlp", 10, arch=arch, widht=3)
    with pytest.raises(ValueError, match="fixes"):
        build_model("mlp-aug", 10, arch=arch, permute_augment=False)
    # equivariant models get their position tables sized to the dataset's architecture
    for name in ("dwsnet", "nggnn", "ngt"):
        model = build_model(name, 10, arch=arch, hidden=8)
        assert isinstance(model, torch.nn.Module)
        bounds = lambda m: (m.max_in, m.max_out) if name == "dwsnet" else (m.encoder.max_in, m.encoder.max_out)
        assert bounds(model) == (2, 1)
        assert bounds(build_model(name, 10, arch=arch, hidden=8, max_in=64)) == (64, 1)



# ----------------------------------------------------------------------------
# clear errors
# ----------------------------------------------------------------------------

def test_errors(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="data directory not found"):
        run(cfg(tmp_path / "nothing", tmp_path / "r0"))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "train.pt").write_bytes((data / "train.pt").read_bytes())
    with pytest.raises(FileNotFoundError, match="val.pt, test.pt"):
        run(cfg(partial, tmp_path / "r1"))
    (partial / "val.pt").write_text("not a tensor file")
    (partial / "test.pt").write_bytes((data / "test.pt").read_bytes())
    with pytest.raises(ValueError, match="val.pt"):
        run(cfg(partial, tmp_path / "r1"))

    run(cfg(data, tmp_path / "r2", epochs=1))
    with pytest.raises(FileExistsError, match="--resume"):
        run(cfg(data, tmp_path / "r2", epochs=1))
    with pytest.raises(ValueError, match="lr: checkpoint 0.001 vs now 0.01"):
        run(cfg(data, tmp_path / "r2", epochs=1, lr=1e-2), resume=True)
    with pytest.raises(ValueError, match="model_kwargs"):
        run(cfg(data, tmp_path / "r2", epochs=1, model_kwargs={"hidden": (32,)}), resume=True)
    (tmp_path / "r2" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        run(cfg(data, tmp_path / "r2", epochs=1), resume=True)

    # resuming against different data is refused
    other = tmp_path / "other"
    build_inr_splits("digits", other, n_train=300, n_val=100, n_test=100, steps=100, seed=1, progress=False)
    run(cfg(data, tmp_path / "r3", epochs=2), stop_after_epoch=1)
    with pytest.raises(ValueError, match="differ from the data"):
        run(cfg(other, tmp_path / "r3", epochs=2), resume=True)

    with pytest.raises(ValueError, match="unknown model"):
        cfg(data, tmp_path / "r4", model="nope")
    with pytest.raises(ValueError, match="batch_size=0"):
        cfg(data, tmp_path / "r4", batch_size=0)
    with pytest.raises(ValueError, match="permutte.*accepted"):
        cfg(data, tmp_path / "r4", augment={"permutte": True})


def test_errors_are_single_lines_naming_what_to_change(data, tmp_path):
    run(cfg(data, tmp_path / "r", epochs=2), stop_after_epoch=1)
    with pytest.raises(ValueError) as info:                   # resume a run of another model
        run(cfg(data, tmp_path / "r", epochs=2, model="mlp-aug"), resume=True)
    message = str(info.value)
    assert "\n" not in message and "model: checkpoint 'mlp' vs now 'mlp-aug'" in message and "--out" in message
    with pytest.raises(ValueError, match="stop_after_epoch=5 is beyond epochs=2"):
        run(cfg(data, tmp_path / "r", epochs=2), resume=True, stop_after_epoch=5)
    with pytest.raises(ValueError, match="threads"):
        run(cfg(data, tmp_path / "r", epochs=2), resume=True, threads=0)
    with pytest.raises(ValueError, match="hidden.*>= 1"):
        run(cfg(data, tmp_path / "r0", epochs=1, model_kwargs={"hidden": (64, 0)}))
    with pytest.raises(ValueError, match="not a neuralgraph training checkpoint"):
        load_trained(data / "train.pt")
    with pytest.raises(ValueError, match="device 'mps' is not supported"):
        load_trained(tmp_path / "r", device="mps")
    with pytest.raises(ValueError, match="batch_size=0"):
        evaluate_classifier(load_trained(tmp_path / "r")[0], load_splits(data)["val"], batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        cfg(data, tmp_path / "r", seed=2 ** 70)


def test_a_best_checkpoint_of_another_run_is_refused_on_resume(data, tmp_path):
    """best.pt left or copied from another run would otherwise become the reported test accuracy."""
    run(cfg(data, tmp_path / "a", epochs=3), stop_after_epoch=2)
    run(cfg(data, tmp_path / "b", epochs=3, seed=1), stop_after_epoch=2)
    (tmp_path / "a" / "best.pt").write_bytes((tmp_path / "b" / "best.pt").read_bytes())
    with pytest.raises(ValueError, match="best.pt is not the best epoch of the run"):
        run(cfg(data, tmp_path / "a", epochs=3), resume=True)


def test_classes_missing_from_the_training_split_are_refused(data, tmp_path):
    """A class only val/test hold can never be predicted: the accuracy would be silently capped."""
    copy = tmp_path / "data"
    copy.mkdir()
    for s in ("val", "test"):
        (copy / f"{s}.pt").write_bytes((data / f"{s}.pt").read_bytes())
    train = INRDataset(data / "train.pt")
    keep = torch.nonzero(train.labels != 9).flatten()
    weights, biases = train.params(keep)
    save_inr_dataset(copy / "train.pt", weights, biases, train.labels[keep], train.arch,
                     num_classes=10, source_index=train.source_index[keep], psnr=train.psnr[keep], meta=train.meta)
    with pytest.raises(ValueError, match=r"label\(s\) \[9\].*train.pt"):
        run(cfg(copy, tmp_path / "run", epochs=1))


def test_flat_mlp_range_checks():
    arch = ng.mlp_architecture([2, 8, 1], "sine", w0=30)
    for kwargs, key in [({"hidden": (8, 0)}, "hidden"), ({"hidden": (-5,)}, "hidden"),
                        ({"dropout": 1.0}, "dropout"), ({"dropout": float("nan")}, "dropout")]:
        with pytest.raises(ValueError, match=key):
            FlatMLP(10, arch, **kwargs)


# ----------------------------------------------------------------------------
# one run per directory
# ----------------------------------------------------------------------------

def test_a_second_run_into_the_same_directory_is_refused(data, tmp_path, capsys):
    """While another process holds the run directory, train() refuses it (naming directory and PID);
    the lock goes away with the process that held it."""
    from neuralgraph.cli import main
    from neuralgraph.io import DirectoryBusy

    out = tmp_path / "run"
    with locked_by_another_process(out) as pid:
        with pytest.raises(DirectoryBusy, match=f"{out}.*process {pid}"):
            run(cfg(data, out, epochs=1))
        with pytest.raises(DirectoryBusy):
            run(cfg(data, out, epochs=1), resume=True)
        assert main(["train", "--data", str(data), "--out", str(out), "--model", "mlp", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"process {pid}" in err and "--out" in err, err
        assert not (out / "last.pt").exists() and not (out / "best.pt").exists()
    res = run(cfg(data, out, epochs=1))                      # the dead holder released it
    assert res.finished and (out / "last.pt").exists()
    run(cfg(data, out, epochs=1), resume=True)               # and our own run released it too
