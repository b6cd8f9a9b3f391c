"""Model zoos: vectorised training, resumable zoo files, loading as neural graphs, StatNN and Kendall's tau.

Real data (sklearn's 8x8 digits), real (tiny) trainings.
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

import neuralgraph as ng
from neuralgraph.zoo import (ZooDataset, evaluate_statnn, forward_grouped, forward_vmap, generate_zoo, kendall_tau,
                             load_zoo_data, sample_zoo, statnn_features, train_group, train_plain, zoo_statnn_features)
from neuralgraph.zoo.cli import add_zoo_parser, run_zoo
from neuralgraph.zoo.specs import init_params

SMALL = dict(dataset="digits", image_size=8, n_train=256, n_test=200, n_train_eval=100, progress=False)


@pytest.fixture(scope="module")
def digits():
    return load_zoo_data("digits", image_size=8)


@pytest.fixture(scope="module")
def cnn_zoo(tmp_path_factory):
    """6 Small-Zoo CNNs, 1 epoch on 256 digits, in 2 chunks."""
    path = tmp_path_factory.mktemp("zoo") / "cnn.pt"
    return generate_zoo(path, family="small_cnn", num_networks=6, epochs=1, chunk_size=3, seed=3, **SMALL)


@pytest.fixture(scope="module")
def wild_zoo(tmp_path_factory):
    """8 Wild-Park CNNs of 3 architectures (residual blocks, BatchNorm), 1 epoch."""
    path = tmp_path_factory.mktemp("zoo") / "wild.pt"
    return generate_zoo(path, family="wild_park", num_networks=8, epochs=1, chunk_size=8, num_architectures=3,
                        seed=1, **SMALL)


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def test_tiny_zoo_trains_and_records(cnn_zoo):
    zoo = ZooDataset(cnn_zoo)
    assert len(zoo) == 6 and zoo.epochs == [0, 1] and bool(zoo.valid.all())
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert zoo.metrics[key].shape == (6, 2)
    acc = zoo.targets()
    assert bool(((acc >= 0) & (acc <= 1)).all())
    # training changed the weights of every network and lowered the mean training loss
    for group in zoo.groups:
        w = group["weights"][0]
        assert bool((w[:, 0] != w[:, 1]).flatten(1).any(1).all())
    assert zoo.metrics["train_loss"][:, 1].mean() < zoo.metrics["train_loss"][:, 0].mean()


def test_rebuilt_networks_reproduce_recorded_accuracy(cnn_zoo, wild_zoo, digits):
    for path in (cnn_zoo, wild_zoo):
        zoo = ZooDataset(path)
        for epoch in zoo.epochs:
            recorded = zoo.targets(epoch)
            for i in range(len(zoo)):
                model = zoo.model(i, epoch)
                assert not model.training
                assert _accuracy(model, digits["test_x"][:200], digits["test_y"][:200]) == pytest.approx(
                    recorded[i].item(), abs=1e-6)


def test_resume_after_interruption_is_bit_exact(cnn_zoo, tmp_path):
    class Stop(Exception):
        pass

    def stop(k, n):
        raise Stop

    out = tmp_path / "cnn.pt"
    with pytest.raises(Stop):
        generate_zoo(out, family="small_cnn", num_networks=6, epochs=1, chunk_size=3, seed=3, on_chunk=stop, **SMALL)
    assert not out.exists() and len(list((tmp_path / "cnn.pt.chunks").glob("chunk_*.pt"))) == 1
    generate_zoo(out, family="small_cnn", num_networks=6, epochs=1, chunk_size=3, seed=3, **SMALL)
    a, b = torch.load(cnn_zoo, weights_only=True), torch.load(out, weights_only=True)
    assert a["checksums"] == b["checksums"]
    for ga, gb in zip(a["groups"], b["groups"]):
        assert torch.equal(ga["index"], gb["index"])
        assert all(torch.equal(x, y) for x, y in zip(ga["weights"], gb["weights"]))
    assert all(torch.equal(a["metrics"][k], b["metrics"][k]) for k in a["metrics"])


def test_other_settings_refused_unless_overwrite(cnn_zoo, tmp_path):
    out = tmp_path / "z.pt"
    out.write_bytes(cnn_zoo.read_bytes())
    with pytest.raises(ValueError, match="other settings"):
        generate_zoo(out, family="small_cnn", num_networks=6, epochs=1, chunk_size=3, seed=4, **SMALL)


@pytest.mark.parametrize("family,arch_pick", [("small_cnn", 0), ("wild_park", "residual+bn"), ("mlp", 0)])
def test_vectorised_training_equals_plain_loop(family, arch_pick, digits):
    archs, hps = sample_zoo(family, 40, seed=2, image_size=8, num_architectures=6)
    if arch_pick == "residual+bn":
        a = next(i for i, arch in enumerate(archs) if arch.residuals and arch.has_norm)
    else:
        a = arch_pick
    group = [dict(h, lr=min(h["lr"], 5e-3)) for h in hps if h["arch"] == a][:4]   # no chaotic learning rates
    assert len({h["optimizer"] for h in group}) > 1 or len(group) < 3
    kw = dict(epochs=2, checkpoints=[0, 1, 2], batch_size=32, group_seed=11)
    ev = {"test": (digits["test_x"][:50], digits["test_y"][:50])}
    x, y = digits["train_x"][:96], digits["train_y"][:96]
    fast = train_group(archs[a], group, x, y, ev, **kw)
    slow = train_plain(archs[a], group, x, y, ev, replay_dropout=True, **kw)
    for key in ("weights", "biases", "norms"):
        for f, s in zip(fast[key], slow[key]):
            if f is not None:
                torch.testing.assert_close(f, s, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast["test_loss"], slow["test_loss"], rtol=1e-4, atol=1e-4)


def test_grouped_forward_equals_vmap_and_modules(digits):
    archs, hps = sample_zoo("small_cnn", 8, seed=0, image_size=8)
    arch = archs[0]
    group = [h for h in hps if h["arch"] == 0]
    p = init_params(arch, group)
    x = digits["test_x"][:24]
    per_net = x.expand(len(group), *x.shape)
    params = {"weights": p["weights"], "biases": p["biases"]}
    shared = forward_grouped(arch, params, x)
    batched = forward_grouped(arch, params, per_net)
    ref = forward_vmap(arch, p["weights"], p["biases"], per_net)
    torch.testing.assert_close(shared, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched, ref, rtol=1e-5, atol=1e-5)
    model = ng.to_model(ng.stacked_to_batch([w[:1] for w in p["weights"]], [b[:1] for b in p["biases"]],
                                            arch).get_example(0))
    torch.testing.assert_close(model(x), ref[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["small_cnn", "wild_park"])
def test_unfold_convolutions_equal_grouped_ones(family, digits):
    """The CUDA default (im2col + batched matmul) against the CPU default (grouped conv2d), on CPU."""
    archs, hps = sample_zoo(family, 24, seed=1, image_size=8)
    x = digits["test_x"][:6]
    for a, arch in enumerate(archs):
        group = [h for h in hps if h["arch"] == a]
        if not group:
            continue
        p = init_params(arch, group)
        params = {"weights": p["weights"], "biases": p["biases"],   # BatchNorm's [B, out, 4] columns by name
                  **{k: [None if n is None else n[..., c].contiguous() for n in p["norms"]] for c, k in
                     enumerate(("norm_weight", "norm_bias", "running_mean", "running_var"))}}
        for inp in (x, x.expand(len(group), *x.shape)):
            torch.testing.assert_close(forward_grouped(arch, params, inp, conv="unfold"),
                                       forward_grouped(arch, params, inp, conv="grouped"), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="conv must be"):
        forward_grouped(arch, params, x, conv="im2col")


def test_split_is_by_network_and_batches_concatenate_groups(wild_zoo, digits):
    zoo = ZooDataset(wild_zoo)
    assert len(zoo.groups) > 1
    split = zoo.split(val=0.25, test=0.25, seed=0)
    sets = [set(s.tolist()) for s in split]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set().union(*sets) == set(zoo.valid.nonzero().reshape(-1).tolist())
    assert all(torch.equal(a, b) for a, b in zip(split, zoo.split(val=0.25, test=0.25, seed=0)))
    batch = zoo.batch(split.train)
    assert sorted(batch.net_index.tolist()) == sorted(split.train.tolist())
    torch.testing.assert_close(batch.y, zoo.targets()[batch.net_index])
    assert batch.edge_attr.shape[1] == zoo.edge_dim
    for g, model in enumerate(ng.to_models(batch)):                 # graphs of several architectures, in order
        ref = zoo.model(int(batch.net_index[g]))
        torch.testing.assert_close(model(digits["test_x"][:8]), ref(digits["test_x"][:8]))


def test_statnn_features_invariant_to_hidden_permutations(wild_zoo):
    zoo = ZooDataset(wild_zoo)
    batch = zoo.batch(range(len(zoo)))
    permuted, _ = ng.permute_hidden(batch, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(permuted.edge_attr, batch.edge_attr)
    for g, (a, b) in enumerate(zip(ng.to_models(batch), ng.to_models(permuted))):
        fa, fb = _features(a), _features(b)
        torch.testing.assert_close(fa, fb, rtol=1e-12, atol=1e-12)
        assert fa.shape == (1, 14 * len(_layers(a)))


def _features(model):
    layers = _layers(model)
    return statnn_features([l.weight.detach()[None] for l in layers],
                           [None if l.bias is None else l.bias.detach()[None] for l in layers])


def _layers(model):
    return [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def test_statnn_features_values_and_padding(wild_zoo):
    w = [torch.arange(8.0).view(1, 2, 4)]
    b = [torch.tensor([[1.0, 3.0]])]
    f = statnn_features(w, b)[0]
    expect = [3.5, np.var(np.arange(8.0)), 0, 1.75, 3.5, 5.25, 7, 2, 1, 1, 1.5, 2, 2.5, 3]
    torch.testing.assert_close(f, torch.tensor(expect, dtype=torch.float64))
    zoo = ZooDataset(wild_zoo)
    X, ids = zoo_statnn_features(zoo, range(len(zoo)))
    depth = torch.tensor([zoo.archs[zoo.hparams[i]["arch"]].num_layers for i in ids])
    assert X.shape == (len(zoo), 14 * max(a.num_layers for a in zoo.archs))
    for row, d in zip(X, depth.tolist()):
        assert np.isfinite(row[: 14 * d]).all() and np.isnan(row[14 * d:]).all()


def test_kendall_tau_known_cases():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau(torch.tensor([1.0, 2.0, 3.0, 4.0]), np.array([1, 2, 4, 3])) == pytest.approx(4 / 6)


def test_tau_difference_is_a_paired_bootstrap_around_the_tau_gap():
    from neuralgraph.zoo import tau_difference

    rng = np.random.default_rng(0)
    target = rng.uniform(size=300)
    good, poor = target + rng.normal(0, 0.05, 300), target + rng.normal(0, 0.5, 300)
    res = tau_difference(good, poor, target, num_resamples=300)
    assert res["diff"] == pytest.approx(kendall_tau(good, target) - kendall_tau(poor, target))
    assert 0 < res["low"] <= res["diff"] <= res["high"]            # clearly better: the interval excludes 0
    same = tau_difference(good, good, target, num_resamples=50)
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0}
    twin = target + rng.normal(0, 0.05, 300)                       # as good as `good`, independent noise
    close = tau_difference(good, twin, target, num_resamples=300)
    assert close["low"] < 0 < close["high"]                        # indistinguishable: the interval spans 0


@pytest.mark.parametrize("regressor", ["gbt", "mlp"])
def test_statnn_evaluates_on_held_out_networks(wild_zoo, regressor):
    zoo = ZooDataset(wild_zoo)                      # mixed depths: NaN features for absent layers
    split = zoo.split(val=0.0, test=0.5, seed=1)
    res = evaluate_statnn(zoo, split, regressor=regressor)
    assert sorted(res["ids"].tolist()) == split.test.tolist()
    assert np.isfinite(res["pred"]).all()
    assert -1.0 <= res["tau"] <= 1.0 or np.isnan(res["tau"])


@pytest.mark.parametrize("regressor", ["gbt", "mlp"])
def test_statnn_regressors_learn_a_ranking_with_absent_layers(regressor):
    from neuralgraph.zoo import fit_statnn

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    X[::3, 3:] = np.nan                             # a third of the networks lack the last layer
    y = np.tanh(X[:, 0]) + 0.5 * X[:, 1] + rng.normal(0, 0.05, 600)
    model = fit_statnn(X[:400], y[:400], regressor=regressor)
    pred = model.predict(X[400:])
    assert np.isfinite(pred).all()
    assert kendall_tau(pred, y[400:]) > 0.75


def test_cli_generates_and_scores(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_zoo_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "mlp.pt"
    args = parser.parse_args(["zoo", "generate", "--family", "mlp", "--dataset", "digits", "--num-networks", "16",
                              "--epochs", "1", "--n-train", "128", "--n-test", "100", "--n-train-eval", "64",
                              "--hidden", "16,16x16", "--out", str(out), "--no-progress"])
    assert run_zoo(args) == 0
    assert '"networks": 16' in capsys.readouterr().out
    zoo = ZooDataset(out)
    assert {tuple(a.widths[1:-1]) for a in zoo.archs} == {(16,), (16, 16)}
    assert run_zoo(parser.parse_args(["zoo", "statnn", "--zoo", str(out)])) == 0
    assert "kendall_tau" in capsys.readouterr().out
    # the regress task's split and extra checkpoints, from the same flags
    assert run_zoo(parser.parse_args(["zoo", "statnn", "--zoo", str(out), "--val", "0.25", "--test", "0.5",
                                      "--train-epochs", "0", "--regressor", "mlp"])) == 0
    printed = capsys.readouterr().out
    assert '"test_networks": 8' in printed and '"regressor": "mlp"' in printed
