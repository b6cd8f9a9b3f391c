"""Self-supervised embeddings of sine-wave INRs: the data, the views, InfoNCE, invariance and the probe."""
from __future__ import annotations

import json
import math

import pytest
import torch

import neuralgraph as ng
from neuralgraph.inr.sines import build_sine_splits, sine_grid, sine_signals
from neuralgraph.inr import INRDataset
from neuralgraph.tasks.edit import denormalize
from neuralgraph.tasks.ssl import Contrastive, info_nce, info_nce_per_view
from neuralgraph.train import TrainConfig, build_model, load_splits, train



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """48 / 16 / 24 sine INRs, 80 fit steps."""
    out = tmp_path_factory.mktemp("sine_inrs")
    build_sine_splits(out, 48, 16, 24, steps=80, seed=0, progress=False)
    return out


@pytest.fixture(scope="module")
def splits(data):
    s = load_splits(data, normalize=True)
    return s


def _task(splits, **kw) -> Contrastive:
    task = Contrastive(**kw)
    task.setup(splits)
    return task


# ----------------------------------------------------------------------------- data

def test_sine_inrs_compute_their_sines(data):
    """Every stored network, rebuilt as an nn.Sequential, computes a sin(b x) on the 2000 points (the MSE the
    file records), well below the signal's power; (a, b) are in [0, 10]^2 and the grid is DWSNets'."""
    x = sine_grid()
    assert x.shape == (2000,) and x[0] == -math.pi and abs(float(x[1] - x[0]) - math.pi / 1000) < 1e-6
    assert float(x[-1]) < math.pi
    for split in ("train", "val", "test"):
        d = INRDataset(data / f"{split}.pt")
        t = d.meta["targets"]
        assert t.dtype == torch.float32 and t.shape == (len(d), 2) and d.meta["target_names"] == ["a", "b"]
        assert float(t.min()) >= 0 and float(t.max()) <= 10
        assert torch.equal(d.labels, torch.zeros(len(d), dtype=torch.long)) and d.num_classes == 1
        g = sine_signals(t, x)
        power = g.pow(2).mean(1)
        mse = d.meta["fit_mse"]
        assert float((mse / power).median()) < 1e-3, (mse / power).median()
        assert float((mse / power.clamp_min(0.5)).max()) < 0.05, (mse / power).max()
        for i in (0, len(d) - 1):
            net = ng.to_model(d[i])
            with torch.no_grad():
                err = (net(x[:, None])[:, 0] - g[i]).pow(2).mean()
            torch.testing.assert_close(err, mse[i], rtol=1e-3, atol=1e-7)


def test_sine_splits_are_deterministic_and_one_fit_per_directory(tmp_path):
    a = build_sine_splits(tmp_path / "a", 4, 2, 2, steps=20, seed=3, progress=False)
    b = build_sine_splits(tmp_path / "b", 4, 2, 2, steps=20, seed=3, progress=False)
    for s in a:
        da, db = INRDataset(a[s]), INRDataset(b[s])
        assert all(torch.equal(x, y) for x, y in zip(da.weights + da.biases, db.weights + db.biases))
        assert torch.equal(da.meta["targets"], db.meta["targets"])
    other = build_sine_splits(tmp_path / "c", 4, 2, 2, steps=20, seed=4, progress=False)
    assert not torch.equal(INRDataset(other["test"]).meta["targets"], INRDataset(a["test"]).meta["targets"])
    # a rerun with the same settings reuses the files; other settings are refused, or replace with overwrite
    before = a["train"].stat().st_mtime_ns
    build_sine_splits(tmp_path / "a", 4, 2, 2, steps=20, seed=3, progress=False)
    assert a["train"].stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="steps 20 there, 21 now"):
        build_sine_splits(tmp_path / "a", 4, 2, 2, steps=21, seed=3, progress=False)
    build_sine_splits(tmp_path / "a", 4, 2, 2, steps=21, seed=3, progress=False, overwrite=True)
    assert INRDataset(a["train"]).meta["fit"]["steps"] == 21
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["settings"]["steps"] == 21


# ----------------------------------------------------------------------------- views

def test_views_differ_keep_structure_and_stay_consistent(splits):
    """Two views per INR, rows i and i + B; the graph structure is the INR's; the standardised parameters the
    model sees are the standardisation of the view's raw ones; masking zeroes raw entries at the given rate;
    the noise has the given scale on the standardised parameters."""
    train = splits["train"]
    task = _task(splits)
    idx = torch.tensor([3, 0, 7, 5])
    b = task.train_batch(train, idx, None, torch.Generator().manual_seed(0))
    plain = train.batch(idx)
    assert b.num_graphs == 8 and torch.equal(b.inr_index, torch.cat([idx, idx]))
    for i in range(4):
        v1, v2, orig = b.get_example(i), b.get_example(i + 4), plain.get_example(i)
        assert torch.equal(v1.edge_index, orig.edge_index) and torch.equal(v2.edge_index, orig.edge_index)
        assert not torch.equal(v1.edge_attr_raw, v2.edge_attr_raw)
    raw = denormalize(b, train.stats)
    torch.testing.assert_close(raw.edge_attr, b.edge_attr_raw, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(raw.x, b.x_raw, rtol=1e-5, atol=1e-6)
    zero = (b.edge_attr_raw == 0).double().mean()
    assert 0.45 < float(zero) < 0.55, zero
    # noise only: the deviation from the INR is 0.2 on the standardised scale, per layer
    noisy = _task(splits, mask=0.0).train_batch(train, torch.arange(48), None, torch.Generator().manual_seed(1))
    base = train.batch(torch.arange(48))
    dev = noisy.edge_attr - torch.cat([base.edge_attr, base.edge_attr])
    for layer in (1, 2, 3):
        sel = noisy.edge_layer == layer
        assert abs(float(dev[sel].std()) - 0.2) < 0.02, (layer, dev[sel].std())
    # clean_view: the first views are the INRs themselves
    clean = _task(splits, clean_view=True).train_batch(train, idx, None, torch.Generator().manual_seed(2))
    n = plain.edge_attr.shape[0]
    assert torch.equal(clean.edge_attr_raw[:n], plain.edge_attr_raw)
    assert not torch.equal(clean.edge_attr_raw[n:], plain.edge_attr_raw)


def test_eval_views_are_deterministic_and_train_views_follow_the_generator(splits):
    task = _task(splits)
    idx = torch.arange(5)
    e1, e2 = task.eval_batch(splits["val"], idx), task.eval_batch(splits["val"], idx)
    assert torch.equal(e1.edge_attr, e2.edge_attr)
    t1 = task.train_batch(splits["train"], idx, None, torch.Generator().manual_seed(4))
    t2 = task.train_batch(splits["train"], idx, None, torch.Generator().manual_seed(4))
    t3 = task.train_batch(splits["train"], idx, None, torch.Generator().manual_seed(5))
    assert torch.equal(t1.edge_attr, t2.edge_attr) and not torch.equal(t1.edge_attr, t3.edge_attr)


# ----------------------------------------------------------------------------- loss

def test_info_nce_equals_a_direct_computation():
    torch.manual_seed(0)
    z = torch.randn(10, 16, dtype=torch.float64)
    t = 0.1
    B = 5
    expect = []
    for i in range(2 * B):
        u = z[i] / z[i].norm()
        sims = {k: float(u @ (z[k] / z[k].norm())) / t for k in range(2 * B) if k != i}
        p = (i + B) % (2 * B)
        expect.append(-sims[p] + math.log(sum(math.exp(s) for s in sims.values())))
    torch.testing.assert_close(info_nce_per_view(z, t).double(), torch.tensor(expect, dtype=torch.float64),
                               rtol=1e-5, atol=1e-5)
    assert abs(float(info_nce(z, t)) - sum(expect) / len(expect)) < 1e-4
    # identical views of orthogonal embeddings: the partner has similarity 1, the 6 others 0, so each
    # loss is log(1 + 6 exp(-1 / t)); the metric finds every partner
    e = torch.eye(4) * 10
    task = Contrastive()
    vals = task.collect(torch.cat([e, e]), type("B", (), {"inr_index": torch.arange(4).repeat(2)})())
    torch.testing.assert_close(vals["loss"], torch.full((8,), math.log1p(6 * math.exp(-1 / t))))
    assert bool(vals["correct"].all())


@pytest.mark.parametrize("model_name", ["nggnn", "dwsnet"])
def test_embeddings_and_losses_are_invariant_to_hidden_permutations(splits, model_name):
    task = _task(splits)
    torch.manual_seed(0)
    model = build_model(model_name, task.out_dim(), arch=splits["train"].arch, head="invariant",
                        hidden=8, num_layers=2).eval()
    b = task.eval_batch(splits["val"], torch.arange(4))
    permuted, _ = ng.permute_hidden(b, torch.Generator().manual_seed(1))
    assert not torch.equal(permuted.edge_attr, b.edge_attr)
    with torch.no_grad():
        z, zp = model(b), model(permuted)
    assert z.shape == (8, 16)
    torch.testing.assert_close(zp, z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(task.collect(zp, permuted)["loss"], task.collect(z, b)["loss"], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_ssl_run_probe_beats_the_mean(data, tmp_path):
    """A short real run (small NG-GNN): metrics, a linear probe of (a, b) far better than the train mean
    (constant or uninformative embeddings would not be), tsne.png."""
    r = train(TrainConfig(data=str(data), out=str(tmp_path / "run"), model="nggnn",
                          model_kwargs={"hidden": 8, "num_layers": 1}, task="ssl", epochs=2, batch_size=24),
              progress=False, verbose=False)
    t = r.test_metrics
    assert set(t) >= {"loss", "acc", "probe_mse", "probe_mse_a", "probe_mse_b", "probe_val_mse", "mean_mse"}
    assert abs(t["probe_mse"] - (t["probe_mse_a"] + t["probe_mse_b"]) / 2) < 1e-9
    assert t["probe_mse"] < 0.6 * t["mean_mse"], t
    assert (tmp_path / "run" / "tsne.png").stat().st_size > 10_000
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,train_loss,train_acc,val_loss,val_acc,lr,time")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test_probe_mse"] == t["probe_mse"] and results["task"] == "ssl"
