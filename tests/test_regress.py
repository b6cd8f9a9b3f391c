"""The regress task on a model zoo: accuracy prediction end to end, invariance, splits by network."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import neuralgraph as ng
from neuralgraph.tasks import Regress
from neuralgraph.train import TrainConfig, build_model, train
from neuralgraph.zoo import generate_zoo

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist"
SMALL = dict(dataset="digits", image_size=8, n_train=256, n_test=200, n_train_eval=100, progress=False)


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
    """A fixed-architecture (Small CNN) and a heterogeneous (Wild-Park-style) zoo of digit classifiers."""
    out = tmp_path_factory.mktemp("zoos")
    fixed = generate_zoo(out / "cnn.pt", family="small_cnn", num_networks=20, epochs=1, chunk_size=20, seed=5,
                         **SMALL)
    wild = generate_zoo(out / "wild.pt", family="wild_park", num_networks=16, epochs=1, chunk_size=16,
                        num_architectures=3, seed=6, **SMALL)
    return {"small_cnn": fixed, "wild_park": wild}


def test_splits_are_by_network_and_targets_are_the_zoo_metric(zoos):
    task = Regress()
    splits = task.load_splits(zoos["wild_park"], normalize=False)
    ids = [set(v.ids.tolist()) for v in splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    view = splits["test"]
    b = view.batch(torch.arange(len(view)))
    torch.testing.assert_close(b.y.sort().values, view.targets.float().sort().values)


def test_extra_training_checkpoints_add_samples_of_training_networks_only(zoos):
    """train_epochs: each training network also at other checkpoints, with its metric there."""
    from neuralgraph.zoo import ZooDataset

    zoo = ZooDataset(zoos["wild_park"])
    plain = Regress().load_splits(zoos["wild_park"], normalize=False)
    more = Regress(train_epochs=(0,)).load_splits(zoos["wild_park"], normalize=False)
    train = more["train"]
    assert len(train) == 2 * len(plain["train"]) and len(more["test"]) == len(plain["test"])
    assert torch.equal(more["test"].ids, plain["test"].ids)             # still split by network
    b = train.batch(torch.arange(len(train)))
    expected = torch.cat([zoo.targets(None)[train.ids], zoo.targets(0)[train.ids]])
    torch.testing.assert_close(b.y.sort().values, expected.float().sort().values)
    assert set(b.net_index.tolist()) == set(train.ids.tolist())
    with pytest.raises(ValueError, match="no checkpoint at epoch 7"):
        Regress(train_epochs=(7,)).load_splits(zoos["wild_park"], normalize=False)
    # StatNN takes the same extra samples
    from neuralgraph.zoo import evaluate_statnn

    res = evaluate_statnn(zoo, zoo.split(0.15, 0.15, 0), train_epochs=(0,))
    assert len(res["ids"]) == len(plain["test"]) and torch.isfinite(torch.as_tensor(res["pred"])).all()


@pytest.mark.parametrize("model_name", ["nggnn", "ngt", "dwsnet"])
def test_predictions_are_invariant_on_heterogeneous_cnn_batches(zoos, model_name):
    """The whole path (zoo batch of mixed CNN architectures -> processor -> prediction) is invariant."""
    task = Regress()
    splits = task.load_splits(zoos["wild_park"], normalize=False)
    torch.manual_seed(0)
    kw = {"hidden": 16, "num_layers": 2} | ({"probe_image_size": 8, "n_probes": 4} if model_name != "dwsnet" else {})
    model = build_model(model_name, 1, arch=splits["train"].arch, **kw).eval()
    batch = splits["train"].batch(torch.arange(len(splits["train"])))
    assert len({a.widths for a in batch.arch}) > 1
    permuted, _ = ng.permute_hidden(batch, torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(permuted), model(batch), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("family,model_name", [("small_cnn", "nggnn"), ("wild_park", "dwsnet"),
                                               ("small_cnn", "mlp")])
def test_regress_training_runs_end_to_end(zoos, tmp_path, family, model_name):
    torch.set_num_threads(1)
    kw = {"mlp": {"hidden": (32,)}, "dwsnet": {"hidden": 8, "num_layers": 2}}.get(
        model_name, {"hidden": 16, "num_layers": 2, "n_probes": 4, "probe_image_size": 8})
    cfg = TrainConfig(data=str(zoos[family]), out=str(tmp_path / "run"), task="regress", model=model_name,
                      epochs=2, batch_size=8, lr=1e-3, normalize=False, model_kwargs=kw,
                      augment={"permute": True} if model_name != "mlp" else {})
    res = train(cfg, progress=False, verbose=False)
    assert res.finished and -1 <= res.test_metrics["tau"] <= 1 and res.test_metrics["loss"] >= 0
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_tau,val_loss,val_tau,lr,time,data_s,step_s"
    assert json.loads((tmp_path / "run" / "results.json").read_text())["task"] == "regress"
    assert (tmp_path / "run" / "predictions.png").stat().st_size > 0


def test_regress_refuses_augmentations_that_change_the_target(zoos):
    from neuralgraph.augment import Augment

    view = Regress().load_splits(zoos["small_cnn"], normalize=False)["train"]
    with pytest.raises(ValueError, match="only permutation augmentation"):
        view.batch([0, 1], augment=Augment(noise_std=0.1), generator=torch.Generator())


def test_model_selection_ranks_a_nan_tau_last():
    """A constant prediction has NaN tau; compared raw it would block every later epoch."""
    from neuralgraph.zoo import kendall_tau

    assert math.isnan(kendall_tau([0.5] * 4, [0.1, 0.2, 0.3, 0.4]))
    task = Regress()
    constant, learnt = {"tau": float("nan"), "loss": 0.01}, {"tau": 0.1, "loss": 0.5}
    assert not task.score(learnt) > task.score(constant)          # the trap
    assert task.selection_key(learnt) > task.selection_key(constant)
    assert task.selection_key({"tau": 0.2, "loss": 0.5}) > task.selection_key(learnt)


def test_pairwise_ranking_loss_is_ranknet_over_ordered_pairs():
    """Equal to the pair-by-pair definition, the same in any chunking, blind to ties and to shifts."""
    from neuralgraph.tasks.regress import pairwise_ranking_loss

    g = torch.Generator().manual_seed(0)
    pred = torch.randn(23, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 6, (23,), generator=g).double()        # many ties
    terms = [torch.nn.functional.softplus(-4.0 * (pred[i] - pred[j]))
             for i in range(23) for j in range(23) if target[i] > target[j]]
    expected = torch.stack(terms).mean()
    got = pairwise_ranking_loss(pred, target, scale=4.0, chunk=5)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(pairwise_ranking_loss(pred + 3.0, target, scale=4.0), expected)
    got.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # the right order costs less than the reverse one; all ties: zero, still differentiable
    y = torch.arange(10.0)
    assert pairwise_ranking_loss(y, y) < pairwise_ranking_loss(-y, y)
    flat = torch.zeros(4, requires_grad=True)
    out = pairwise_ranking_loss(flat, torch.ones(4))
    out.backward()
    assert out.item() == 0 and torch.equal(flat.grad, torch.zeros(4))


def test_regress_with_the_ranking_loss_trains_and_reports_it(zoos, tmp_path):
    """loss="rank": a real (tiny) training whose split loss is the ranking loss, selected by tau."""
    torch.set_num_threads(1)
    cfg = TrainConfig(data=str(zoos["small_cnn"]), out=str(tmp_path / "run"), task="regress", model="mlp",
                      task_kwargs={"loss": "rank", "rank_scale": 5.0}, epochs=2, batch_size=8, lr=1e-3,
                      normalize=False, model_kwargs={"hidden": (16,)})
    res = train(cfg, progress=False, verbose=False)
    assert res.finished and -1 <= res.test_metrics["tau"] <= 1
    # a ranking loss of a mean over pairs of softplus: between 0 and softplus(s * spread) -- here, near log 2
    assert 0 < res.test_metrics["loss"] < 5
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["task_kwargs"]["loss"] == "rank"


def test_split_predictions_are_matched_to_their_networks(zoos):
    """predict() on a mixed-architecture split: every output carries its network id and target,
    and equals the output for that network alone (batches are grouped, not in id order)."""
    from neuralgraph.zoo import ZooDataset

    zoo = ZooDataset(zoos["wild_park"])
    view = Regress().load_splits(zoos["wild_park"], normalize=False)["train"]
    torch.manual_seed(0)
    model = build_model("dwsnet", 1, arch=view.arch, hidden=8, num_layers=2).eval()
    ids, pred, target = view.predict(model, batch_size=5)
    assert sorted(ids.tolist()) == sorted(view.ids.tolist())
    torch.testing.assert_close(target, zoo.targets()[ids].float())
    position = {int(i): k for k, i in enumerate(view.ids)}
    for i, p in zip(ids.tolist(), pred):
        with torch.no_grad():
            alone = model(view.batch([position[i]])).reshape(())
        torch.testing.assert_close(p, alone, rtol=1e-5, atol=1e-5)


def test_relative_noise_is_scaled_per_network_and_layer():
    from neuralgraph.augment import relative_noise_stacked

    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.01, 1.0, 100.0]).reshape(3, 1, 1, 1, 1)
    conv = torch.randn(3, 16, 16, 3, 3, generator=g) * scale           # three networks of very different scales
    single = torch.randn(3, 1, generator=g)                             # one output bias per network
    before = conv.clone()
    noisy, same, absent = relative_noise_stacked([conv, single, None], noise=0.1, generator=g)
    assert torch.equal(conv, before) and absent is None                 # inputs untouched, None passes
    ratio = (noisy - conv).flatten(1).std(1) / conv.flatten(1).std(1)
    torch.testing.assert_close(ratio, torch.full((3,), 0.1), rtol=0.05, atol=0)
    torch.testing.assert_close(same, single)                            # a single entry has std 0: no noise
    dropped, = relative_noise_stacked([conv], dropout=0.25, generator=g)
    zero = dropped == 0
    assert abs(zero.float().mean().item() - 0.25) < 0.02
    torch.testing.assert_close(dropped[~zero], conv[~zero] / 0.75)      # survivors rescaled as F.dropout


def test_weight_noise_perturbs_training_batches_only(zoos):
    """Task args weight_noise / weight_dropout: training batches perturbed, targets and evaluation untouched."""
    from neuralgraph.augment import Augment

    splits = Regress(weight_noise=0.1, weight_dropout=0.01).load_splits(zoos["wild_park"], normalize=False)
    train_view, idx = splits["train"], torch.arange(6)
    clean = train_view.batch(idx)
    noisy = train_view.batch(idx, augment=Augment(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(clean.net_index, noisy.net_index) and torch.equal(clean.y, noisy.y)
    assert torch.equal(clean.edge_index, noisy.edge_index)
    delta = (noisy.edge_attr - clean.edge_attr).abs()
    assert delta.max() > 0 and (delta[clean.edge_attr == 0] == 0).all()    # padded kernel taps stay 0
    torch.testing.assert_close(train_view.batch(idx).edge_attr, clean.edge_attr, rtol=0, atol=0)
    plain = Regress().load_splits(zoos["wild_park"], normalize=False)["train"]
    torch.testing.assert_close(plain.batch(idx, augment=Augment(), generator=torch.Generator()).edge_attr,
                               clean.edge_attr, rtol=0, atol=0)


@pytest.fixture(scope="module")
def wild_run(zoos, tmp_path_factory):
    """A (tiny) DWSNet regress run trained on the heterogeneous zoo, and its result."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("wild_run") / "run"
    cfg = TrainConfig(data=str(zoos["wild_park"]), out=str(out), task="regress", model="dwsnet", epochs=1,
                      batch_size=8, lr=1e-3, normalize=False, model_kwargs={"hidden": 8, "num_layers": 2})
    return out, train(cfg, progress=False, verbose=False)


def test_inference_on_a_zoo_matches_training_and_each_network_alone(zoos, wild_run):
    """predict / evaluate / embed of a regress run read a zoo: results in network-id order, each equal to
    the network's output alone, the test split's tau the trainer's (batches are grouped by architecture)."""
    from neuralgraph.inference import embed, evaluate, load_run, open_zoo, predict
    from neuralgraph.zoo import ZooDataset, kendall_tau

    run, res = wild_run
    zoo = ZooDataset(zoos["wild_park"])
    out = predict(run, zoos["wild_park"], split="test", batch_size=3)
    test_ids = Regress().load_splits(zoos["wild_park"], normalize=False)["test"].ids
    assert torch.equal(out["index"], test_ids.sort().values)
    torch.testing.assert_close(out["target"], zoo.targets()[out["index"]].float())
    assert kendall_tau(out["pred"], out["target"]) == pytest.approx(res.test_metrics["tau"], abs=1e-6)
    assert evaluate(run, zoos["wild_park"], split="test") == pytest.approx(res.test_metrics, abs=1e-6)
    model, ck = load_run(run)
    view = open_zoo(zoos["wild_park"], ck)                       # every valid network, ascending ids
    assert torch.equal(view.ids, zoo.valid.nonzero().squeeze(1))
    for k in (0, len(out["index"]) - 1):
        i = int(out["index"][k])
        with torch.no_grad():
            alone = model(view.batch([int((view.ids == i).nonzero())])).reshape(())
        torch.testing.assert_close(out["pred"][k], alone, rtol=1e-5, atol=1e-5)
    # embeddings: the same rows for the same networks, whatever else is in the batches
    every, test = embed(run, zoos["wild_park"], batch_size=4), embed(run, zoos["wild_park"], split="test")
    assert every.dim() == 2 and every.shape[0] == len(view)
    torch.testing.assert_close(every[torch.searchsorted(view.ids, out["index"])], test, rtol=1e-5, atol=1e-5)
    again, targets = embed(run, zoos["wild_park"], split="test", return_labels=True)
    assert torch.equal(again, test) and torch.equal(targets.float(), out["target"])


def test_zoo_inference_refuses_what_it_cannot_score(zoos, wild_run, tmp_path):
    from neuralgraph.inference import predict

    run, _ = wild_run
    with pytest.raises(ValueError, match="split must be one of train, val, test"):
        predict(run, zoos["wild_park"], split="holdout")
    with pytest.raises(FileNotFoundError, match="zoo file not found"):
        predict(run, tmp_path / "missing.pt")
    torch.set_num_threads(1)                    # a run on 3x3 kernels cannot read the wild zoo's larger ones
    cfg = TrainConfig(data=str(zoos["small_cnn"]), out=str(tmp_path / "small"), task="regress", model="dwsnet",
                      epochs=1, batch_size=8, normalize=False, model_kwargs={"hidden": 4, "num_layers": 1})
    train(cfg, progress=False, verbose=False)
    with pytest.raises(ValueError, match=r"wild.pt: kernels of \d+ taps, but the run was trained on at most 9"):
        predict(tmp_path / "small", zoos["wild_park"])


def test_cli_predicts_a_zoo_with_a_regress_run(zoos, wild_run, tmp_path, capsys):
    import csv

    from neuralgraph.cli import main
    from neuralgraph.inference import predict

    run, res = wild_run
    assert main(["predict", "--run", str(run), "--data", str(zoos["wild_park"]), "--split", "test",
                 "--out", str(tmp_path / "p.csv")]) == 0
    assert f"Kendall's tau against the zoo's targets: {res.test_metrics['tau']:.4f}" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    ref = predict(run, zoos["wild_park"], split="test")
    assert [int(r["index"]) for r in rows] == ref["index"].tolist()
    torch.testing.assert_close(torch.tensor([float(r["pred"]) for r in rows]), ref["pred"], rtol=1e-5, atol=0)
    assert main(["evaluate", "--run", str(run), "--data", str(zoos["wild_park"]), "--split", "test"]) == 0
    assert f"tau {res.test_metrics['tau']:.4f}" in capsys.readouterr().out
    assert main(["predict", "--run", str(run), "--data", str(zoos["wild_park"]), "--confusion",
                 str(tmp_path / "cm.png")]) == 2
    assert "--confusion needs a classify run" in capsys.readouterr().err and not (tmp_path / "cm.png").exists()


@pytest.mark.slow
@pytest.mark.skipif(not MNIST.is_dir(), reason="MNIST IDX files not found")
def test_results_script_end_to_end(tmp_path, monkeypatch, capsys):
    """benchmarks/results_zoo_regression.py at tiny size: two seeds and their ensemble, trees only
    (``--statnn gbt``), one results file for the zoo with the margins over the fitted StatNN."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("zoo_results", REPO / "benchmarks" / "results_zoo_regression.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(sys, "argv", [
        "results_zoo_regression.py", "--out", str(tmp_path), "--root-mnist", str(MNIST), "--zoo", "mnist_small_cnn",
        "--num-networks", "60", "--zoo-epochs", "2", "--n-train", "512", "--n-test", "200", "--epochs", "1",
        "--train-epochs", "0", "1", "--val", "0.2", "--test", "0.4",
        "--models", "nggnn", "--hidden", "8", "--batch-size", "8", "--seeds", "0", "1", "--statnn", "gbt",
        "--threads", "1"])
    script.main()
    rows = json.loads((tmp_path / "results_mnist_small_cnn_s0-1.json").read_text())
    assert [(r["model"], r.get("seed")) for r in rows] == [("statnn", None), ("nggnn", 0), ("nggnn", 1),
                                                           ("nggnn x2", [0, 1])]
    for r in rows[1:]:
        assert -1 <= r["tau"] <= 1 and r["test_networks"] == rows[0]["test_networks"]
        low, high = r["ci95"]
        assert low <= r["tau_minus_statnn"] <= high
        assert not any(k.endswith("_mlp") for k in r)                  # the MLP StatNN was not fitted
    assert "| mnist_small_cnn | nggnn x2 |" in capsys.readouterr().out


def test_prefetching_batches_changes_no_result(zoos, tmp_path, monkeypatch):
    """The trainer builds the next batch in a background thread (accel.prefetch): the same run with
    the plain loop gives bit-identical losses and weights (the batches' random draws keep their order)."""
    import functools

    import neuralgraph.train.trainer as trainer
    from neuralgraph.train.accel import prefetch

    def run(out):
        cfg = TrainConfig(data=str(zoos["wild_park"]), out=str(out), task="regress", model="nggnn", epochs=2,
                          batch_size=4, normalize=False, seed=3, augment={"permute": True},
                          task_kwargs={"weight_noise": 0.1, "weight_dropout": 0.05},
                          model_kwargs={"hidden": 8, "num_layers": 1, "probe_image_size": 8})
        res = train(cfg, progress=False, verbose=False)
        return res, torch.load(out / "last.pt", weights_only=False)["model"]

    fast, fast_w = run(tmp_path / "prefetch")
    monkeypatch.setattr(trainer, "prefetch", functools.partial(prefetch, enabled=False))
    plain, plain_w = run(tmp_path / "plain")
    for key in ("train_loss", "val_loss", "val_tau"):
        assert [h[key] for h in fast.history] == [h[key] for h in plain.history]
    assert fast.test_metrics == plain.test_metrics
    assert all(torch.equal(fast_w[k], plain_w[k]) for k in plain_w)
