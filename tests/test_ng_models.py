"""NG-GNN and NG-T processors: symmetry of both heads, batch independence, gradients, real training."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch

import neuralgraph as ng
from neuralgraph.graph import pad_edge_features
from neuralgraph.schema import EDGE_RESIDUAL, NODE_INPUT
from dws_equiv.ng import NGGNN, NGTransformer
from neuralgraph.inr import fit_sirens
from strategies import cnns, mlps, model_input, resnets
from training import adam_losses

MODELS = [NGGNN, NGTransformer]
IMAGE = 16  # probe image size: large enough for every CNN the strategies draw
HETERO = st.lists(st.one_of(mlps(), cnns(), resnets()), min_size=2, max_size=5)


#: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(models: list[nn.Module]) -> Batch:
    return ng.batch_models(models, edge_dim=9)


def _processor(cls, head: str, use_probes: bool = True, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return cls(out_dim=3, hidden=16, num_layers=2, head=head, use_probes=use_probes, n_probes=4,
               probe_image_size=IMAGE, max_in=16, max_out=16, **kwargs).eval()


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("use_probes", [True, False])
@settings(max_examples=8, deadline=None)
@given(models=HETERO, seed=st.integers(0, 10_000), edge_hidden=st.sampled_from([None, 6]))
def test_invariant_head_is_invariant_to_hidden_permutations(cls, use_probes, models, seed, edge_hidden):
    batch = _batch(models)
    net = _processor(cls, "invariant", use_probes, seed, edge_hidden=edge_hidden)
    permuted, _ = ng.permute_hidden(batch, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out, out_p = net(batch), net(permuted)
    assert out.shape == (len(models), 3)
    torch.testing.assert_close(out_p, out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", MODELS)
@settings(max_examples=8, deadline=None)
@given(models=HETERO, seed=st.integers(0, 10_000), use_probes=st.booleans(), edge_hidden=st.sampled_from([None, 6]))
def test_equivariant_head_edits_permute_with_the_graph(cls, models, seed, use_probes, edge_hidden):
    batch = _batch(models)
    net = _processor(cls, "equivariant", use_probes, seed, edge_hidden=edge_hidden)
    permuted, perm = ng.permute_hidden(batch, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out, out_p = net(batch), net(permuted)
    torch.testing.assert_close(out_p.x, out.x[perm.node_perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_p.edge_attr, out.edge_attr[perm.edge_perm], rtol=1e-5, atol=1e-5)
    # the input is not modified, the edit is real, and what must stay fixed stays fixed
    assert out is not batch and not torch.equal(out.edge_attr, batch.edge_attr)
    inputs = batch.node_type == NODE_INPUT
    assert torch.equal(out.x[inputs], batch.x[inputs])
    residual = batch.edge_type == EDGE_RESIDUAL
    assert torch.equal(out.edge_attr[residual], batch.edge_attr[residual])
    assert (out.edge_attr[~batch.edge_mask.bool()] == 0).all()
    # the edited graphs rebuild into working models, and the edited permuted graphs compute the
    # same functions as the edited originals (the edit commutes with the symmetry)
    for m, edited, edited_p in zip(models, ng.to_models(out), ng.to_models(out_p)):
        x = model_input(m, generator=torch.Generator().manual_seed(seed))
        y = edited.eval()(x)
        assert y.shape == m(x).shape and torch.isfinite(y).all()
        torch.testing.assert_close(edited_p.eval()(x), y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("head", ["invariant", "equivariant"])
@settings(max_examples=5, deadline=None)
@given(models=HETERO, seed=st.integers(0, 10_000), edge_hidden=st.sampled_from([None, 6]))
def test_each_graph_is_processed_independently_of_its_batch(cls, head, models, seed, edge_hidden):
    net = _processor(cls, head, True, seed, edge_hidden=edge_hidden)
    batch = _batch(models)
    with torch.no_grad():
        out = net(batch)
        for i, m in enumerate(models):
            alone = net(pad_edge_features(ng.to_graph(m), 9))  # a plain graph, no batch vector
            if head == "invariant":
                torch.testing.assert_close(out[i:i + 1], alone, rtol=1e-5, atol=1e-5)
            else:
                torch.testing.assert_close(out.x[batch.batch == i], alone.x, rtol=1e-5, atol=1e-5)
                sel = batch.batch[batch.edge_index[0]] == i
                torch.testing.assert_close(out.edge_attr[sel], alone.edge_attr, rtol=1e-5, atol=1e-5)


def _mixed_batch() -> Batch:
    """An MLP with norms, a residual MLP and a Conv2d net: every edge kind, node kind and norm."""
    torch.manual_seed(0)
    models = [
        nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)),
        nn.Sequential(nn.Linear(2, 4), nn.ReLU(), ng.Residual(nn.Linear(4, 3), nn.SiLU(), nn.Linear(3, 4)),
                      nn.ReLU(), nn.Linear(4, 3)),
        nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 2, stride=2), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(4, 1)),
    ]
    for m in models:
        m.eval()
    with torch.no_grad():  # non-trivial running statistics
        models[0][1].running_mean.normal_()
        models[0][1].running_var.uniform_(0.5, 1.5)
    return _batch(models)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("head", ["invariant", "equivariant"])
@pytest.mark.parametrize("edge_hidden", [None, 6])
def test_every_parameter_gets_a_gradient(cls, head, edge_hidden):
    batch = _mixed_batch()
    net = _processor(cls, head, edge_hidden=edge_hidden).train()
    out = net(batch)
    loss = out.square().sum() if head == "invariant" else out.x.square().sum() + out.edge_attr.square().sum()
    loss.backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"
    # the invariant head reads nodes only, so its last layer has no (dead) edge update
    assert (net.layers[-1].edge_mlp is None) == (head == "invariant")


@pytest.fixture(scope="module")
def digit_inrs():
    """60 SIRENs fitted (briefly) to real 8x8 sklearn digits, 10 per class, as a graph batch."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    idx = torch.cat([torch.nonzero(torch.as_tensor(digits.target) == c).squeeze(1)[:6] for c in range(10)])
    images = torch.as_tensor(digits.images, dtype=torch.float32)[idx] / 16.0
    labels = torch.as_tensor(digits.target)[idx]
    fit = fit_sirens(images, widths=(2, 16, 16, 1), steps=60, lr=1e-3, batch_size=60, seed=0,
                            progress=False, workers=1)
    batch = ng.stacked_to_batch(fit.weights, fit.biases, fit.arch)
    return batch, labels, fit.psnr


@pytest.mark.parametrize("cls", MODELS)
def test_training_on_real_inrs_reduces_the_loss(cls, digit_inrs):
    batch, labels, psnr = digit_inrs
    assert psnr.mean() > 15  # the INRs do encode the digits
    torch.manual_seed(0)
    net = cls(out_dim=10, hidden=16, num_layers=2, n_probes=8, max_in=4, max_out=4)
    losses = adam_losses(net, batch, labels, steps=40, lr=1e-2)
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("head", ["invariant", "equivariant"])
def test_networks_without_a_hidden_layer_are_processed(cls, head):
    """A linear classifier is a neural graph too: NG models take it (DWSNet refuses it, clearly)."""
    torch.manual_seed(0)
    linear, deep = nn.Sequential(nn.Linear(3, 2)), nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    net = _processor(cls, head)
    batch = _batch([linear, deep])
    with torch.no_grad():
        out, alone = net(batch), net(_batch([linear]))
    if head == "invariant":
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[:1], alone, rtol=1e-5, atol=1e-5)
    else:
        rebuilt = ng.to_models(out)
        x = torch.randn(5, 3)
        assert rebuilt[0](x).shape == (5, 2) and torch.isfinite(rebuilt[0](x)).all()
        torch.testing.assert_close(out.edge_attr[:6], alone.edge_attr, rtol=1e-5, atol=1e-5)


def test_clear_errors():
    wide_out = ng.to_graph(nn.Sequential(nn.Linear(2, 5)))
    with pytest.raises(ValueError, match="max_out=4"):
        NGGNN(hidden=8, num_layers=1, max_out=4)(wide_out)
    wide_in = ng.to_graph(nn.Sequential(nn.Linear(5, 2)))
    for use_probes in (True, False):
        with pytest.raises(ValueError, match="max_in=4"):
            NGTransformer(hidden=8, num_layers=1, max_in=4, use_probes=use_probes)(wide_in)
    conv = ng.to_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1)))
    with pytest.raises(ValueError, match="max_taps=4"):
        NGGNN(hidden=8, num_layers=1, max_taps=4, head="equivariant")(conv)
    with pytest.raises(ValueError, match="head must be"):
        NGGNN(head="pooled")
    with pytest.raises(ValueError, match="num_layers"):
        NGTransformer(num_layers=0)
    with pytest.raises(ValueError, match="divisible by attn_heads"):
        NGTransformer(hidden=10, attn_heads=4)


def test_renamed_arguments_still_build_the_same_models():
    """heads= -> attn_heads=, max_layers= -> max_depth= (NG: layers incl. the input = max_depth + 1):
    the old names warn and give the same parameters, so saved configurations still load."""
    from dws_equiv import DWSNet
    from dws_equiv.layers import DWSLayer

    def shapes(m):
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}

    with pytest.warns(DeprecationWarning, match="attn_heads"):
        old = NGTransformer(hidden=16, heads=2, use_probes=False)
    assert shapes(old) == shapes(NGTransformer(hidden=16, attn_heads=2, use_probes=False))
    assert old.layers[0].attn_heads == 2
    with pytest.warns(DeprecationWarning, match="max_depth=31"):
        old = NGGNN(hidden=8, max_layers=32, use_probes=False)
    assert shapes(old) == shapes(NGGNN(hidden=8, use_probes=False))
    with pytest.warns(DeprecationWarning, match="max_depth"):
        assert DWSLayer(1, 2, max_layers=5).max_depth == 5
    with pytest.warns(DeprecationWarning, match="max_depth"):
        assert shapes(DWSNet(3, max_layers=5, max_in=2, max_out=1)) == shapes(DWSNet(3, max_depth=5, max_in=2,
                                                                                         max_out=1))


@pytest.mark.parametrize("name", ["dwsnet", "nggnn", "ngt", "mlp"])
@pytest.mark.parametrize("head", ["invariant", "equivariant"])
def test_reset_parameters_reinitialises_every_parameter(name, head):
    """Every module that owns parameters has reset_parameters(); the model's resets them all."""
    from neuralgraph.train.registry import build_model

    arch = ng.mlp_architecture([2, 4, 3, 1])
    model = build_model(name, 3, arch, head=head)
    for module in model.modules():      # parameter containers are reset by their owner
        if not isinstance(module, (nn.ParameterDict, nn.ParameterList)) and \
                any(True for _ in module.parameters(recurse=False)):
            assert hasattr(module, "reset_parameters"), type(module).__name__
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    model.reset_parameters()
    for pname, p in model.named_parameters():
        assert torch.isfinite(p).all(), pname
