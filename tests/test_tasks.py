"""Tasks of the trainer: the edit task (dilation) end to end, its equivariance, and the shared loop."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import grey_dilation

import neuralgraph as ng
from neuralgraph.inr import INRDataset, build_inr_splits
from neuralgraph.tasks import Edit, make_task
from neuralgraph.tasks.edit import denormalize, dilate
from neuralgraph.train import TrainConfig, build_model, load_splits, load_trained, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """90 / 30 / 30 digit INRs (100 fit steps)."""
    out = tmp_path_factory.mktemp("edit_inrs")
    build_inr_splits("digits", out, n_train=90, n_val=30, n_test=30, steps=100, progress=False)
    return out


def test_dilation_is_grey_dilation_with_a_3x3_element():
    """Equal to scipy's grey_dilation with a border that never wins (OpenCV's default for dilate)."""
    images = torch.rand(4, 9, 7)
    expect = np.stack([grey_dilation(im, size=(3, 3), mode="constant", cval=-np.inf) for im in images.numpy()])
    assert torch.equal(dilate(images), torch.from_numpy(expect))
    assert torch.equal(dilate(images, 1), images)


@pytest.mark.parametrize("normalize", [False, True])
def test_edited_graphs_rebuild_into_the_inrs_the_loss_renders(data, normalize):
    """The loss renders exactly what to_models(edited graph) computes on the image grid (+ offset)."""
    splits = load_splits(data, normalize=normalize)
    task = Edit()
    task.setup(splits)
    torch.manual_seed(0)
    model = build_model("nggnn", None, arch=splits["train"].arch, head="equivariant", hidden=16, num_layers=2)
    batch = splits["train"].batch(torch.arange(5))
    edited = model(batch)
    raw = denormalize(edited, splits["train"].stats) if normalize else edited
    rendered = task.render(raw)
    coords = ng.inr.image_grid(*task.shape)
    for i, inr in enumerate(ng.to_models(raw)):
        torch.testing.assert_close(inr(coords).reshape(task.shape), rendered[i], rtol=1e-5, atol=1e-6)
    loss = task.loss(edited, batch)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == ["probes.images"], missing          # probe images serve convolutional networks only


@pytest.mark.parametrize("model_name", ["nggnn", "dwsnet"])
def test_edit_loss_is_invariant_and_edits_are_equivariant(data, model_name):
    """Permuting the input INRs' hidden neurons permutes the edit and leaves every per-INR loss unchanged."""
    splits = load_splits(data, normalize=True)
    task = Edit()
    task.setup(splits)
    torch.manual_seed(1)
    kw = {"hidden": 16, "num_layers": 2}
    model = build_model(model_name, None, arch=splits["train"].arch, head="equivariant", **kw).eval()
    batch = splits["val"].batch(torch.arange(6))
    permuted, perm = ng.permute_hidden(batch, torch.Generator().manual_seed(2))
    with torch.no_grad():
        out, out_p = model(batch), model(permuted)
        values, values_p = task.collect(out, batch), task.collect(out_p, permuted)
    torch.testing.assert_close(out_p.x, out.x[perm.node_perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_p.edge_attr, out.edge_attr[perm.edge_perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values_p["loss"], values["loss"], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(values_p["unedited"], values["unedited"], rtol=1e-5, atol=1e-8)


def test_flat_mlp_edits_write_back_through_node_positions(data):
    """The flat baseline's edit reads and writes through node positions: a permuted input is edited
    consistently (zero deltas give back the input exactly)."""
    splits = load_splits(data, normalize=False)
    model = build_model("mlp", None, arch=splits["train"].arch, head="equivariant", hidden=(8,))
    with torch.no_grad():
        model.net[-1].weight.zero_()
        model.net[-1].bias.zero_()
    batch, _ = ng.permute_hidden(splits["val"].batch(torch.arange(4)), torch.Generator().manual_seed(0))
    out = model(batch)
    assert torch.equal(out.x, batch.x) and torch.equal(out.edge_attr, batch.edge_attr)


@pytest.mark.slow
def test_edit_training_runs_end_to_end(data, tmp_path):
    """train(task='edit'): the loss falls, metrics.csv has the task's columns, edits.png is drawn,
    results.json holds the test MSE beside the unedited baseline, and load_trained rebuilds the editor."""
    torch.set_num_threads(1)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), task="edit", model="nggnn", epochs=3,
                      batch_size=16, lr=3e-3, model_kwargs={"hidden": 16, "num_layers": 2, "n_probes": 4})
    res = train(cfg, progress=False, verbose=False)
    assert res.finished and res.task == "edit" and res.test_acc is None
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_unedited,val_loss,val_unedited,lr,time,data_s,step_s"
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["task"] == "edit" and results["test_loss"] == pytest.approx(res.test_metrics["loss"])
    assert 0 < results["test_unedited"] and (tmp_path / "run" / "edits.png").stat().st_size > 0
    model, ck = load_trained(tmp_path / "run")
    batch = INRDataset(data / "test.pt", normalize=True).batch([0, 1])
    assert type(model(batch)).__name__.endswith("Batch") and ck["task"] == "edit"


def test_a_rebuilt_inr_renders_the_image(data):
    """The +0.5 output offset is part of the stored architecture: to_model(dataset graph) *is* the INR."""
    from neuralgraph.data import load_digits

    ds = INRDataset(data / "test.pt")
    images, _ = load_digits()
    coords = ng.inr.image_grid(8, 8)
    inr = ng.to_model(ds[0])
    assert isinstance(inr[-1], ng.Offset) and inr[-1].value == 0.5
    image = images[int(ds.source_index[0])]
    rendered = inr(coords).reshape(8, 8).detach()
    assert float((rendered - image).pow(2).mean()) < 1e-3 and 0.2 < float(rendered.mean()) < 0.6


def test_task_options_are_checked():
    with pytest.raises(ValueError, match="no option"):
        make_task("edit", radius=3)
    with pytest.raises(ValueError, match="odd integer"):
        make_task("edit", size=2)


def test_edit_resume_is_bit_exact(data, tmp_path):
    """The shared loop's resume holds for every task: 1 epoch + resume to 2 == 2 epochs straight."""
    torch.set_num_threads(1)

    def cfg(out):
        return TrainConfig(data=str(data), out=str(out), task="edit", model="mlp", epochs=2, batch_size=32,
                           model_kwargs={"hidden": (16,)}, augment={"permute": True})
    straight = train(cfg(tmp_path / "a"), progress=False, verbose=False)
    train(cfg(tmp_path / "b"), progress=False, verbose=False, stop_after_epoch=1)
    resumed = train(cfg(tmp_path / "b"), resume=True, progress=False, verbose=False)
    untimed = lambda history: [{k: v for k, v in h.items() if k not in ("time", "data_s", "step_s")}  # noqa: E731
                               for h in history]
    assert untimed(resumed.history) == untimed(straight.history)
    assert resumed.test_metrics == straight.test_metrics


def test_amp_and_the_data_step_meter_in_the_loop(data, tmp_path):
    """--amp (bf16 autocast, CPU here) trains through the same loop; every epoch records data vs step time."""
    torch.set_num_threads(1)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), model="nggnn", epochs=1, batch_size=32, amp=True,
                      model_kwargs={"hidden": 8, "num_layers": 1, "n_probes": 2})
    res = train(cfg, progress=False, verbose=False)
    row = res.history[0]
    assert res.finished and 0 <= res.test_acc <= 1 and row["data_s"] > 0 and row["step_s"] > 0
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].endswith(",lr,time,data_s,step_s")
