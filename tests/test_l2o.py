"""Learned optimizers (neuralgraph.l2o): layout, equivariance, meta-training, resuming, the optimizer wrapper,
meta-testing and bad input. Tiny problems on the real Fashion-MNIST / MNIST IDX files and sklearn's digits."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import neuralgraph as ng
import neuralgraph.l2o as l2o
from neuralgraph.data import load_digits
from neuralgraph.l2o.checkpoint import load_meta_params
from neuralgraph.l2o.evaluate import evaluate_optimizers
from neuralgraph.l2o.features import advance, init_state
from neuralgraph.l2o.layout import ParamLayout
from neuralgraph.symmetry import apply_permutation, permute_hidden

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"          # ../shared/datasets, as the other tests
needs_data = pytest.mark.skipif(not (DATA / "fashion_mnist").is_dir() or not (DATA / "mnist").is_dir(),
                                reason=f"needs the Fashion-MNIST and MNIST IDX files in {DATA}")
PROCESSORS = ("none", "nggnn", "ngt", "dwsnet")


def _cnn(seed: int = 0, channels: int = 4) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


def _digits(n: int = 64):
    x, y = load_digits()
    return x[:n, None], y[:n]


def _optimizer(processor: str, **kw) -> l2o.LearnedOptimizer:
    """A small learned optimizer whose context head is random (it starts at zero), so the processor matters."""
    torch.manual_seed(1)
    opt = l2o.LearnedOptimizer(processor=processor, hidden=8, num_layers=2, context=4, ff_hidden=16, **kw)
    if opt.uses_graph:
        for head in (opt.node_head, opt.edge_head):
            nn.init.normal_(head[-1].weight, std=0.5)
    return opt


def _tiny_config(out, **kw) -> l2o.MetaTrainConfig:
    base = dict(out=str(out), data_root=str(DATA), processor="nggnn", hidden=8, num_layers=1, context=4,
                ff_hidden=8, image_size=7, channels=4, cnn_layers=2, batch_size=16, unroll=3, horizon=6,
                optimizees=2, outer_steps=4, meta_lr=1e-3, n_val=100, n_train=600, validate_every=2, validate_steps=5,
                validate_seeds=1)
    return l2o.MetaTrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------
# layout: the graph the optimizer reads is the library's conversion of the optimizee
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("model", [
    _cnn(),
    nn.Sequential(nn.Flatten(), nn.Linear(64, 5, bias=False), nn.Tanh(), nn.Linear(5, 3)),
])
def test_layout_puts_every_parameter_where_to_graph_does(model):
    arch = l2o.optimizee_architecture(model)
    layout = ParamLayout.of(arch, taps=9)
    theta = torch.cat([p.detach().reshape(1, -1) for p in l2o.model_parameters(model, arch)], 1)
    node, edge = layout.graph_features(theta.unsqueeze(-1))
    graph = ng.to_graph(model, edge_dim=9)
    assert torch.equal(node, graph.x) and torch.equal(edge, graph.edge_attr)
    back = layout.parameter_values(node, edge, 1).squeeze(-1)
    assert torch.equal(back, theta)
    weights, biases = layout.split(theta)
    assert all(torch.equal(w[0], m.weight) for w, m in zip(weights, [m for m in model if hasattr(m, "weight")]))


# ----------------------------------------------------------------------------
# equivariance of the update
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("processor", PROCESSORS)
def test_update_is_equivariant_to_hidden_permutations(processor):
    opt = _optimizer(processor, step_mult=1.0)                     # updates of order one: a real test at 1e-5
    model = _cnn()
    permuted_graph, perm = permute_hidden(ng.to_graph(model), torch.Generator().manual_seed(3))
    permuted = ng.to_model(permuted_graph)
    assert not torch.equal(permuted_graph.edge_attr, ng.to_graph(model).edge_attr)
    x, y = _digits()
    start = ng.to_graph(model).edge_attr.clone()
    wrappers = [l2o.L2O(m, opt) for m in (model, permuted)]
    for _ in range(3):
        for m, w in zip((model, permuted), wrappers):
            w.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            w.step()
    a = apply_permutation(ng.to_graph(model), perm.node_perm)[0]
    b = ng.to_graph(permuted)
    assert (ng.to_graph(model).edge_attr - start).abs().max() > 0.1          # the parameters moved
    assert (a.x - b.x).abs().max() < 1e-5
    assert (a.edge_attr - b.edge_attr).abs().max() < 1e-5


def test_processor_context_changes_the_update():
    """The processor is not dead weight: zeroing its context changes the update (and the test above checks it)."""
    opt = _optimizer("nggnn", step_mult=1.0)
    arch = l2o.optimizee_architecture(_cnn())
    layout = opt.layout(arch)
    g = torch.Generator().manual_seed(0)
    theta, grad = torch.randn(2, layout.numel, generator=g), torch.randn(2, layout.numel, generator=g)
    st = advance(init_state(2, layout.numel), grad)
    with torch.no_grad():
        u = opt(layout, theta, grad, st.momenta, st.step)
        nn.init.zeros_(opt.node_head[-1].weight)
        nn.init.zeros_(opt.edge_head[-1].weight)
        u0 = opt(layout, theta, grad, st.momenta, st.step)
    assert (u - u0).abs().max() > 1e-3


# ----------------------------------------------------------------------------
# the optimizer wrapper on a user's nn.Sequential
# ----------------------------------------------------------------------------

def test_wrapper_step_is_the_learned_update_and_its_state_round_trips():
    opt = _optimizer("nggnn")
    model = _cnn()
    twin = _cnn()
    x, y = _digits()
    arch = l2o.optimizee_architecture(model)
    layout = opt.layout(arch)
    wrapper = l2o.L2O(model, opt)
    state = init_state(1, layout.numel)
    theta = torch.cat([p.detach().reshape(1, -1) for p in l2o.model_parameters(twin, arch)], 1)
    for _ in range(3):
        wrapper.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        wrapper.step()
        twin_loss = nn.functional.cross_entropy(_load(twin, layout, theta)(x), y)
        grads = torch.autograd.grad(twin_loss, l2o.model_parameters(twin, arch))
        grad = torch.cat([t.reshape(1, -1) for t in grads], 1)
        state = advance(state, grad)
        with torch.no_grad():
            theta = theta - opt(layout, theta, grad, state.momenta, state.step)
        state = l2o.OptimizerState(state.momenta, state.step + 1)
    flat = torch.cat([p.detach().reshape(1, -1) for p in l2o.model_parameters(model, arch)], 1)
    assert torch.allclose(flat, theta, atol=1e-6, rtol=0)
    saved = wrapper.state_dict()
    other = l2o.L2O(_load(_cnn(), layout, flat), opt)
    other.load_state_dict(saved)
    assert int(other.state[other.param_groups[0]["params"][0]]["step"]) == 3


def _load(model: nn.Sequential, layout: ParamLayout, theta: torch.Tensor) -> nn.Sequential:
    """``model`` with the flat parameters ``theta [1, P]`` copied in."""
    arch = l2o.optimizee_architecture(model)
    w, b = layout.split(theta.detach())
    tensors = [t for pair in zip(w, b) for t in pair if t is not None]
    with torch.no_grad():
        for p, t in zip(l2o.model_parameters(model, arch), tensors):
            p.copy_(t[0])
    return model


@needs_data
def test_meta_trained_optimizer_trains_a_users_sequential(tmp_path):
    """A briefly meta-trained FF optimizer trains a user's MLP on digits (another task and architecture);
    the same optimizer before meta-training does not."""
    cfg = _tiny_config(tmp_path / "ff", processor="none", unroll=5, horizon=10, outer_steps=20, meta_lr=3e-2,
                       batch_size=32, validate_every=0)
    l2o.meta_train(cfg, log=None)
    x, y = _digits(512)
    ratios = []
    for learned in (l2o.load_learned_optimizer(tmp_path / "ff"), _optimizer("none")):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
        opt = l2o.L2O(model, learned)
        with torch.no_grad():
            before = float(nn.functional.cross_entropy(model(x), y))
        for _ in range(100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            ratios.append(float(nn.functional.cross_entropy(model(x), y)) / before)
    assert ratios[0] < 0.3 and ratios[1] > 0.7, ratios


# ----------------------------------------------------------------------------
# meta-training: runs, resumes bit-identically, refuses other settings
# ----------------------------------------------------------------------------

@needs_data
def test_meta_training_resumes_bit_identically(tmp_path):
    whole = l2o.meta_train(_tiny_config(tmp_path / "a"), log=None)
    assert whole["finished"] and len(whole["history"]) == 4
    assert all(torch.isfinite(torch.tensor(r["meta_loss"])) for r in whole["history"])
    part = l2o.meta_train(_tiny_config(tmp_path / "b"), max_outer_steps=2, log=None)
    assert not part["finished"] and part["outer_step"] == 2
    l2o.meta_train(_tiny_config(tmp_path / "b"), log=None)
    a, b = l2o.load_run(tmp_path / "a", best=False), l2o.load_run(tmp_path / "b", best=False)
    assert a["outer_step"] == b["outer_step"] == 4
    for key in a["meta_params"]:
        assert torch.equal(a["meta_params"][key], b["meta_params"][key]), key
    for key in ("theta", "momenta", "step", "life"):
        assert torch.equal(a["optimizees"][key], b["optimizees"][key]), key
    assert [r["meta_loss"] for r in a["history"]] == [r["meta_loss"] for r in b["history"]]
    assert int(a["optimizees"]["life"].sum()) >= 1                  # optimizees were re-initialised
    vals = [r.get("val_acc") for r in a["history"]]
    assert vals[1] is not None and vals[3] is not None and vals[0] is None      # meta-validated every 2 outer steps
    assert [r.get("val_acc") for r in b["history"]] == vals
    best = l2o.load_run(tmp_path / "a")                              # best.pt: the best meta-validation
    assert best["best"] == a["best"] and best["outer_step"] == a["best"]["outer_step"]
    assert a["best"]["val_acc"] == max(v for v in vals if v is not None)


@needs_data
def test_recomputing_the_inner_steps_gives_the_same_meta_gradient(tmp_path):
    from neuralgraph.l2o.metatraining import MetaTrainer

    grads = []
    for recompute in (False, True):
        cfg = _tiny_config(tmp_path, recompute=recompute)
        trainer = MetaTrainer(cfg, l2o.load_task("fashion_mnist", DATA, 7, cfg.n_val, cfg.n_train))
        surrogate, losses = trainer.unroll()
        surrogate.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in trainer.opt.parameters() if p.grad is not None]))
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-8)


@needs_data
def test_resume_with_other_settings_is_refused(tmp_path):
    l2o.meta_train(_tiny_config(tmp_path, outer_steps=1), log=None)
    with pytest.raises(ValueError, match="processor: checkpoint 'nggnn' vs now 'ngt'"):
        l2o.meta_train(_tiny_config(tmp_path, processor="ngt"), log=None)
    with pytest.raises(FileExistsError, match="already holds"):
        l2o.meta_train(_tiny_config(tmp_path, outer_steps=2), resume=False, log=None)
    l2o.meta_train(_tiny_config(tmp_path, outer_steps=2), log=None)           # more outer steps: allowed
    assert l2o.load_run(tmp_path, best=False)["outer_step"] == 2


# ----------------------------------------------------------------------------
# checkpoints of another optimizer / processor, damaged files
# ----------------------------------------------------------------------------

@needs_data
def test_checkpoint_of_another_optimizer_is_refused(tmp_path):
    l2o.meta_train(_tiny_config(tmp_path / "run", outer_steps=1), log=None)
    state = l2o.load_run(tmp_path / "run")
    with pytest.raises(ValueError, match="holds a 'nggnn' learned optimizer, not 'ngt'"):
        l2o.load_learned_optimizer(tmp_path / "run", processor="ngt")
    other = l2o.LearnedOptimizer(processor="ngt", hidden=8, num_layers=1, context=4, ff_hidden=8)
    with pytest.raises(ValueError, match="holds a 'nggnn' learned optimizer of other settings .*processor"):
        load_meta_params(other, state, "last.pt")
    from neuralgraph.train.checkpoint import save_checkpoint

    save_checkpoint({"config": {}, "model": {}, "epoch": 1, "history": [], "best": {}, "arch": {}, "num_classes": 2},
                    tmp_path / "train.pt")
    with pytest.raises(ValueError, match="not a learned-optimizer run .*training checkpoint"):
        l2o.load_learned_optimizer(tmp_path / "train.pt")
    changed = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    changed["optimizees"]["theta"][0, 0] += 1                       # bytes changed after writing
    torch.save(changed, tmp_path / "damaged.pt")
    with pytest.raises(ValueError, match="checksum mismatch in optimizees/theta"):
        l2o.load_run(tmp_path / "damaged.pt")


# ----------------------------------------------------------------------------
# optimizees the graph cannot represent, or the optimizer cannot read
# ----------------------------------------------------------------------------

def test_bad_optimizees_get_clear_errors():
    ff, ngo = _optimizer("none"), _optimizer("nggnn")
    with pytest.raises(ValueError, match="cannot be represented as a neural graph.*MaxPool2d"):
        l2o.L2O(nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 2)), ff)
    with pytest.raises(ValueError, match="cannot be represented as a neural graph.*Sequential"):
        l2o.L2O(nn.LSTM(4, 4), ff)
    with pytest.raises(ValueError, match="BatchNorm2d|batchnorm2d"):
        l2o.L2O(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(4, 2)), ff)
    with pytest.raises(ValueError, match="25-tap kernels but the optimizer reads 9"):
        l2o.L2O(nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(4, 2)), ngo)
    with pytest.raises(ValueError, match="64 inputs .* max_in=16"):
        l2o.L2O(nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2)), ngo)
    l2o.L2O(nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2)), ff)   # FF reads any width
    model = _cnn()
    model[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match="does not require gradients"):
        l2o.L2O(model, ff)
    model = _cnn()
    opt = l2o.L2O(model, ff)
    x, y = _digits()
    nn.functional.cross_entropy(model[:2](x).mean((2, 3)).repeat(1, 3)[:, :10], y).backward()
    with pytest.raises(ValueError, match="have no gradient while others do"):
        opt.step()


# ----------------------------------------------------------------------------
# meta-testing and the CLI, end to end
# ----------------------------------------------------------------------------

@needs_data
def test_evaluate_and_cli_end_to_end(tmp_path, capsys):
    from neuralgraph.cli import main

    run = tmp_path / "run"
    common = ["--data-root", str(DATA), "--n-train", "600"]
    assert main(["l2o", "meta-train", "--out", str(run), "--processor", "nggnn", "--hidden", "8", "--layers", "1",
                 "--context", "4", "--ff-hidden", "8", "--image-size", "7", "--channels", "4", "--cnn-layers", "2",
                 "--batch-size", "16", "--unroll", "2", "--horizon", "4", "--optimizees", "2", "--outer-steps", "2",
                 "--n-val", "100", "--quiet", *common]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["finished"] is True
    out = tmp_path / "eval"
    argv = ["l2o", "evaluate", "--optimizer", str(run), "--out", str(out), "--steps", "4", "--seeds", "2",
            "--adam-lrs", "1e-3", "1e-2", "--eval-every", "2", "--n-test", "200", "--quiet", *common]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["adam_tuned"]) == set(l2o.TASKS)
    for task in l2o.TASKS:
        assert (out / f"curves_{task}.png").stat().st_size > 1000
    table = (out / "results.md").read_text()
    assert table.count("| nggnn |") == 3 and table.count("**(tuned)**") == 3
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 3 * 3 and all(0 <= r["test_acc_mean"] <= 1 for r in rows)
    cached = sorted(p.stat().st_mtime_ns for p in (out / "cache").iterdir())
    res = evaluate_optimizers([run], DATA, tasks=["mnist"], steps=4, seeds=2, adam_lrs=(1e-3, 1e-2), eval_every=2,
                              out=out, n_train=600, n_test=200, log=None)   # cached: nothing recomputed
    assert sorted(p.stat().st_mtime_ns for p in (out / "cache").iterdir()) == cached
    assert res["tasks"]["mnist"]["nggnn"]["train_loss"].shape == (2, 4)
    assert main(["l2o", "evaluate", "--optimizer", str(tmp_path / "missing"), "--out", str(out), "--quiet",
                 *common]) == 2
    assert "learned-optimizer checkpoint not found" in capsys.readouterr().err
