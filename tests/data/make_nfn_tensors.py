"""Write tests/data/nfn_tensors.pt: weight-space tensors made by the nfn package's own functions.

    ~/peers/nfn_venv/bin/python tests/data/make_nfn_tensors.py tests/data/nfn_tensors.pt

(nfn 0.1.2 from the package index, torch 2.13.0, in its own environment; nfn is never a dependency
of this project). For each of two architectures, an MLP and a CNN (two Conv2d, global average
pooling, a Linear head: the layout of nfn's CNN-zoo examples), three ``nn.Sequential`` networks with
seeded random weights are turned into nfn's tensors as nfn's data pipeline does it: per network
``nfn.common.state_dict_to_tensors(state_dict)`` (each tensor gets a leading channel dim of 1:
``[1, out, in]``, conv ``[1, out, in, kh, kw]``), stacked over networks by torch's
``default_collate`` (``[B, 1, out, in(, kh, kw)]``), as a DataLoader of such pairs gives them to
nfn's layers. Each case stores:

* ``name``, ``seed``: how the networks were made (the architectures are built the same way by
  tests/test_interop_nfn.py);
* ``state_dicts``: the networks' own ``state_dict``s;
* ``weights`` / ``biases``: nfn's stacked tensors;
* ``spec``: ``network_spec_from_wsfeat(WeightSpaceFeatures(weights, biases))`` as
  ``{"weight": [shape, ...], "bias": [shape, ...]}`` (nfn's reading of them; -1 = permutable);
* ``back``: nfn's ``params_to_state_dicts(keys, wsfeat)``: the state dicts nfn writes back;
* ``inputs`` / ``outputs``: a fixed input batch and each network's output on it.
"""
import sys

import torch
from torch import nn
from torch.utils.data import default_collate

from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat, params_to_state_dicts, state_dict_to_tensors


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))


def cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))


CASES = [("mlp", mlp, torch.Size([6, 3])), ("cnn", cnn, torch.Size([6, 1, 7, 7]))]

out = []
for k, (name, make, input_shape) in enumerate(CASES):
    torch.manual_seed(100 + k)
    models = [make().eval() for _ in range(3)]
    state_dicts = [m.state_dict() for m in models]
    weights, biases = default_collate([state_dict_to_tensors(sd) for sd in state_dicts])
    wsfeat = WeightSpaceFeatures(weights, biases)
    spec = network_spec_from_wsfeat(wsfeat)
    back = params_to_state_dicts(list(state_dicts[0].keys()), wsfeat)
    inputs = torch.randn(input_shape)
    with torch.no_grad():
        outputs = torch.stack([m(inputs) for m in models])
    out.append({"name": name, "seed": 100 + k, "state_dicts": state_dicts, "weights": list(weights),
                "biases": list(biases), "spec": {"weight": [list(a.shape) for a in spec.weight_spec],
                                                 "bias": [list(a.shape) for a in spec.bias_spec]},
                "back": [dict(sd) for sd in back], "inputs": inputs, "outputs": outputs})
    print(name, [tuple(w.shape) for w in weights], [tuple(b.shape) for b in biases])
torch.save(out, sys.argv[1])
print(f"wrote {len(out)} cases to {sys.argv[1]}")
