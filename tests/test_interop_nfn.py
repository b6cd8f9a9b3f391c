"""nfn's own tensors (tests/data/nfn_tensors.pt, made by make_nfn_tensors.py with the nfn package): MLPs and
CNNs, conv kernels as edge taps, both directions bit for bit."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import neuralgraph as ng

CASES = {c["name"]: c for c in torch.load(Path(__file__).parent / "data" / "nfn_tensors.pt")}


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))


def cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))


@pytest.mark.parametrize("name,make", [("mlp", mlp), ("cnn", cnn)])
def test_nfn_tensors_round_trip(name, make):
    case = CASES[name]
    arch = ng.Architecture.from_module(make())
    batch = ng.from_weights_biases(case["weights"], case["biases"], "nfn", arch=arch)
    # the graphs are the networks nfn's tensors came from: same state dicts, same outputs
    reference = ng.batch_models([make().eval() for _ in range(3)])
    for i, (sd, model) in enumerate(zip(case["state_dicts"], ng.to_models(batch))):
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), sd.values()))
        here = make().eval()
        here.load_state_dict(sd)
        with torch.no_grad():
            out = model(case["inputs"])
            assert torch.equal(out, here(case["inputs"]))          # the same network, bit for bit, on this CPU
            # the outputs recorded where the fixture was written: convolution kernels round differently per CPU
            assert torch.allclose(out, case["outputs"][i], rtol=1e-5, atol=1e-6)
    assert batch.edge_attr.shape[1] == (9 if name == "cnn" else 1)
    assert reference.edge_attr.shape == batch.edge_attr.shape
    # a conv edge's taps are its kernel, row-major (kh, kw), as the torch layout stores it
    if name == "cnn":
        sd = case["state_dicts"][1]
        g = batch.get_example(1)
        first = (g.edge_layer == 1).nonzero()[0, 0]
        src, dst = g.edge_index[:, first]
        out_ch, in_ch = int(dst) - 1, int(src)
        assert torch.equal(g.edge_attr[first], sd["0.weight"][out_ch, in_ch].reshape(-1))
    # back to nfn's tensors, bit for bit, and to the state dicts nfn's params_to_state_dicts writes
    W, b = ng.to_weights_biases(batch, "nfn")
    assert [list(w.shape) for w in W] == [list(w.shape) for w in case["weights"]]
    assert all(torch.equal(x, y) for x, y in zip(W, case["weights"]))
    assert all(torch.equal(x, y) for x, y in zip(b, case["biases"]))
    for i, back in enumerate(case["back"]):
        assert all(torch.equal(w[i, 0], back[k]) for w, k in zip(W, list(back)[0::2]))
    # nfn's spec reads them as weight [out, in(, kh, kw)] per layer: the shapes ours have
    for spec, layer in zip(case["spec"]["weight"], arch.layers):
        assert spec[2:] == list(layer.kernel_size)


def test_conv_weights_need_the_architecture():
    case = CASES["cnn"]
    with pytest.raises(ValueError, match="pass arch="):
        ng.from_weights_biases(case["weights"], case["biases"], "nfn", activation="relu")
    torch_layout = [w[:, 0] for w in case["weights"]]              # [B, out, in, kh, kw]: the torch layout
    a = ng.from_weights_biases(torch_layout, [x[:, 0] for x in case["biases"]], "torch",
                               arch=ng.Architecture.from_module(cnn()))
    b = ng.from_weights_biases(case["weights"], case["biases"], "nfn", arch=ng.Architecture.from_module(cnn()))
    assert torch.equal(a.edge_attr, b.edge_attr) and torch.equal(a.x, b.x)
