"""The adapt task: seeded target corruption, equivariant adapters, rebuildable adapted classifiers, end to end."""
from __future__ import annotations

import json

import pytest
import torch

import neuralgraph as ng
from neuralgraph.symmetry import apply_permutation
from neuralgraph.data.corrupt import TARGET_DEFAULTS, corrupt, load_target_data
from neuralgraph.tasks import TASKS, Adapt
from neuralgraph.graph import graph_archs
from neuralgraph.tasks.adapt import finetune_stacked, grouped_logits
from neuralgraph.train import build_model
from neuralgraph.zoo import generate_zoo

SMALL = dict(dataset="digits", image_size=8, n_train=400, n_test=300, n_train_eval=100, progress=False)
TASK = dict(n_images=300, n_val_images=200, n_test_images=300, images_per_step=64, min_acc=0.3)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """24 MLP classifiers of sklearn's digits (8x8 inputs, hidden 8, ReLU and tanh): mixed activations."""
    out = tmp_path_factory.mktemp("adapt_zoo")
    return generate_zoo(out / "mlp.pt", family="mlp", num_networks=24, epochs=4, chunk_size=24, seed=3,
                        hidden_choices=((8,),), **SMALL)


@pytest.fixture(scope="module")
def splits(zoo):
    task = Adapt(**TASK)
    return task, task.load_splits(zoo, normalize=False)


def _adapter(name, arch):
    torch.manual_seed(0)
    kw = {"hidden": 8, "num_layers": 2} | ({"probe_image_size": 8, "n_probes": 4} if name != "dwsnet" else {})
    if name == "mlp":
        kw = {"hidden": (16,)}
    return build_model(name, None, arch=arch, head="equivariant", **kw).eval()


def test_corruption_is_seeded_deterministic_and_documented():
    x = load_target_data("digits", image_size=8, n_train=50, n_test=20)
    again = load_target_data("digits", image_size=8, n_train=50, n_test=20)
    for key in ("target_train_x", "target_test_x"):
        assert torch.equal(x[key], again[key])
        assert x[key].shape == x[key.replace("target_", "")].shape
        assert 0 <= float(x[key].min()) and float(x[key].max()) <= 1
    assert not torch.allclose(x["target_train_x"], x["train_x"])
    src = x["train_x"]
    assert torch.equal(corrupt(src, seed=4), corrupt(src, seed=4))
    assert not torch.equal(corrupt(src, seed=4), corrupt(src, seed=5))
    # without noise, blur and contrast loss only the rotation is left: 0 degrees is the identity
    torch.testing.assert_close(corrupt(src, rotate=0, blur=0, contrast=1, noise=0), src)
    assert set(TARGET_DEFAULTS) == {"rotate", "blur", "contrast", "noise"}


def test_splits_are_disjoint_by_network_and_by_image(splits):
    task, sp = splits
    ids = [set(v.ids.tolist()) for v in sp.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert all(len(v) > 0 for v in sp.values())
    # validation images are the training split's images after the adapter's own; test images the test split's
    assert task.images["train"][0].shape[0] == TASK["n_images"]
    assert task.images["val"][0].shape[0] == TASK["n_val_images"]
    assert task.images["test"][0].shape[0] == TASK["n_test_images"]


def test_the_corruption_costs_the_classifiers_accuracy(splits):
    """Unadapted classifiers lose clearly on the target domain (the issue asks for >= 20 points on MNIST;
    on 8x8 digits the drop is checked to be >= 20 points as well)."""
    task, sp = splits
    view = sp["train"]
    b = task.eval_batch(view, torch.arange(len(view)))
    x_s, y = task.source_images["test"], task.images["test"][1]
    with torch.no_grad():
        src = (Adapt.logits(b, x_s).argmax(-1) == y).float().mean()
        tgt = (Adapt.logits(b, task.images["test"][0]).argmax(-1) == y).float().mean()
    assert src - tgt >= 0.2, (float(src), float(tgt))


@pytest.mark.parametrize("name", ["dwsnet", "nggnn", "ngt"])
def test_adapter_commutes_with_hidden_permutations(splits, name):
    """Adapting a permuted classifier = permuting the adapted classifier (mixed ReLU / tanh batch)."""
    task, sp = splits
    view = sp["train"]
    batch = view.batch(torch.arange(len(view)))
    assert len(set(graph_archs(batch))) > 1
    model = _adapter(name, view.arch)
    permuted, perm = ng.permute_hidden(batch, torch.Generator().manual_seed(1))
    with torch.no_grad():
        adapted = task.adapted(model(batch), batch)
        adapted_of_permuted = task.adapted(model(permuted), permuted)
    expected, _ = apply_permutation(adapted, perm.node_perm)
    torch.testing.assert_close(adapted_of_permuted.x, expected.x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(adapted_of_permuted.edge_attr, expected.edge_attr, rtol=1e-5, atol=1e-5)
    # so the adapted classifiers compute the same functions, and the per-network values agree
    x = task.images["test"][0][:50]
    torch.testing.assert_close(Adapt.logits(adapted_of_permuted, x), Adapt.logits(adapted, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["dwsnet", "nggnn", "mlp"])
def test_adapted_graphs_rebuild_into_the_classifiers_the_loss_uses(splits, name):
    """``to_models`` of the adapted batch gives nn.Sequential classifiers whose outputs equal the functional
    forward the loss differentiates; gradients of the loss reach the adapter."""
    task, sp = splits
    view = sp["train"]
    model = _adapter(name, view.arch).train()
    b = task.train_batch(view, torch.arange(min(6, len(view))), None, torch.Generator().manual_seed(0))
    out = task.adapted(model(b), b)
    loss, values = task.loss_and_values(model(b), b)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    assert set(values) == set(task.metrics) and values["acc"].shape == (b.num_graphs,)
    x = task.images["test"][0][:40]
    with torch.no_grad():
        functional = Adapt.logits(out, x)
        models = ng.to_models(out)
        direct = torch.stack([m.eval()(x) for m in models])
    assert all(isinstance(m, torch.nn.Sequential) for m in models)
    torch.testing.assert_close(direct, functional, rtol=1e-5, atol=1e-5)


def test_grouped_logits_keep_each_networks_activation(splits):
    task, sp = splits
    view = sp["train"]
    b = view.batch(torch.arange(len(view)))
    x = task.images["val"][0][:30]
    w, bias = ng.batch_to_stacked(b)
    out = grouped_logits(graph_archs(b), w, bias, x)
    ref = torch.stack([m.eval()(x) for m in ng.to_models(b)])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_vectorised_finetuning_equals_one_network_at_a_time_and_helps(splits):
    task, sp = splits
    b = sp["test"].batch(torch.arange(len(sp["test"])))
    archs = graph_archs(b)
    w, bias = ng.batch_to_stacked(b)
    x, y = task.images["train"]
    kw = dict(steps=30, lr=3e-3, batch_images=64, seed=2)
    fw, fb = finetune_stacked(archs, w, bias, x, y, **kw)
    one_w, one_b = finetune_stacked(archs[:1], [t[:1] for t in w], [t[:1] for t in bias], x, y, **kw)
    for a, c in zip(fw + fb, one_w + one_b):
        torch.testing.assert_close(a[:1], c, rtol=1e-4, atol=1e-5)
    xt, yt = task.images["test"]
    before = (grouped_logits(archs, w, bias, xt).argmax(-1) == yt).float().mean()
    after = (grouped_logits(archs, fw, fb, xt).argmax(-1) == yt).float().mean()
    assert after > before


def test_task_is_registered_and_checks_its_options():
    assert TASKS["adapt"] is Adapt and Adapt.head == "equivariant"
    with pytest.raises(ValueError, match="n_images"):
        Adapt(n_images=0)
    with pytest.raises(ValueError, match="contrast"):
        Adapt(contrast=2.0)


def test_adapt_refuses_normalisation_and_missing_root(zoo, tmp_path):
    with pytest.raises(ValueError, match="no-normalize"):
        Adapt(**TASK).load_splits(zoo, normalize=True)
    with pytest.raises(FileNotFoundError, match="zoo file not found"):
        Adapt(**TASK).load_splits(tmp_path / "none.pt", normalize=False)


@pytest.mark.slow
def test_adapt_training_runs_end_to_end_from_the_cli(zoo, tmp_path):
    from neuralgraph.cli import main

    torch.set_num_threads(1)
    out = tmp_path / "run"
    args = ["train", "--task", "adapt", "--data", str(zoo), "--model", "dwsnet", "--no-normalize", "--epochs", "2",
            "--batch-size", "8", "--model-arg", "hidden=8", "--model-arg", "num_layers=2", "--out", str(out)]
    for k, v in TASK.items():
        args += ["--task-arg", f"{k}={v}"]
    main(args)
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "adapt" and 0 <= res["test_acc"] <= 1 and 0 <= res["test_unadapted"] <= 1
    assert (out / "adapt_scatter.png").is_file() and (out / "adapt_examples.png").is_file()
