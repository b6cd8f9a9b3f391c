"""The functional interpreter (neuralgraph.functional) computes what Architecture.build() computes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import neuralgraph as ng
from neuralgraph.architecture import MODULE_KINDS, ModuleSpec
from neuralgraph.functional import forward, network_values
from neuralgraph.graph import batch_to_stacked


def _models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.GELU(), nn.Linear(6, 5), nn.LayerNorm(5),
                        nn.LeakyReLU(0.2), nn.Dropout(0.3), nn.Linear(5, 2))
    with torch.no_grad():
        mlp[1].running_mean.normal_()
        mlp[1].running_var.uniform_(0.5, 1.5)
    residual = nn.Sequential(nn.Linear(2, 4), nn.SiLU(), ng.Residual(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 4)),
                             nn.Sigmoid(), nn.Linear(4, 3))
    conv = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 4, 2, stride=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    conv1d = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(3, 2))
    siren = ng.inr.siren_architecture((2, 8, 8, 1), w0=30.0, offset=0.5).build()
    inputs = [torch.randn(7, 3), torch.randn(7, 2), torch.randn(7, 2, 6, 6), torch.randn(7, 2, 9),
              torch.rand(7, 2) * 2 - 1]
    return list(zip([mlp, residual, conv, conv1d, siren], inputs))


@pytest.mark.parametrize("k", range(5))
def test_functional_forward_equals_the_built_model(k):
    model, x = _models()[k]
    model.eval()
    graph = ng.to_graph(model)
    weights, biases, norms = batch_to_stacked(graph, norms=True)
    out, values = forward(graph.arch, [w[0] for w in weights], [None if b is None else b[0] for b in biases],
                          [None if n is None else n[0] for n in norms], x, record=True)
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-6)
    assert [v.shape[1] for v in values] == list(graph.arch.widths)
    assert len(network_values(graph.arch, [w[0] for w in weights], [None if b is None else b[0] for b in biases],
                              [None if n is None else n[0] for n in norms], x)) == graph.arch.num_layers + 1


def test_every_module_kind_builds_converts_back_and_runs():
    for name, kind in MODULE_KINDS.items():
        spec = ModuleSpec(name, {"batchnorm1d": (4, 1e-5, 0.1, True, True), "batchnorm2d": (4, 1e-5, 0.1, True, True),
                                 "layernorm": (4, 1e-5, True, True)}.get(name, ()))
        module = spec.build()
        assert isinstance(module, kind.classes)
        assert ModuleSpec.from_module(module, "here") == ModuleSpec(name, ModuleSpec.from_module(module, "here").args)
        if kind.functional is not None:
            x = torch.randn(2, 4, 3) if name == "global_avg_pool1d" else torch.randn(2, 4, 3, 3)
            x = x[..., :2] if name == "reorder" else x             # Reorder() swaps two inputs
            torch.testing.assert_close(spec.functional()(x), module.eval()(x))
    with pytest.raises(ValueError, match="no parameter-free functional form"):
        ModuleSpec("layernorm", (4, 1e-5, True, True)).functional()
    with pytest.raises(ValueError, match="unknown module kind"):
        ModuleSpec("softmax").build()


def test_the_fused_forwards_agree_with_the_interpreter():
    """The SIREN fitter's and the zoo trainer's own forwards compute what the interpreter computes."""
    from torch.func import vmap

    from neuralgraph.inr import siren_architecture, siren_forward, siren_init
    from neuralgraph.zoo import forward_grouped, sample_zoo
    from neuralgraph.zoo.specs import init_params

    arch = siren_architecture((2, 8, 8, 1), w0=30.0)
    weights, biases = siren_init(5, (2, 8, 8, 1), w0=30.0, generator=torch.Generator().manual_seed(0))
    coords = torch.rand(11, 2) * 2 - 1
    interpreted = vmap(lambda w, b: forward(arch, w, b, None, coords))(weights, biases)
    torch.testing.assert_close(siren_forward(weights, biases, coords, w0=30.0), interpreted, rtol=1e-5, atol=1e-6)

    archs, hps = sample_zoo("small_cnn", 6, seed=0, image_size=8)
    group = [h for h in hps if h["arch"] == 0]
    p = init_params(archs[0], group)
    x = torch.rand(4, 1, 8, 8)
    interpreted = vmap(lambda w, b: forward(archs[0], w, b, None, x))(p["weights"], p["biases"])
    for conv in ("grouped", "unfold"):
        torch.testing.assert_close(forward_grouped(archs[0], p, x, conv=conv), interpreted, rtol=1e-5, atol=1e-5)
