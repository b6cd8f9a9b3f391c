"""Write ng_checkpoints.pt: NG-GNN / NG-T state_dicts and their eval-mode outputs, made by a checkout of
the library from before the uniform (dense-block) path, for tests/test_ng_uniform.py.

    git worktree add /tmp/before 004b746
    python tests/data/make_ng_checkpoints.py /tmp/before tests/data/ng_checkpoints.pt

(made at rev 004b746, the last commit before the uniform path). Each case stores its config, the
stacked weights ``W`` / biases ``b`` of a uniform batch of SIREN-like MLPs, the state_dict and the
outputs (invariant head: logits; equivariant head: the edited ``x`` and ``edge_attr``; no head: ``h``
and ``e``).
"""
import sys

sys.path.insert(0, sys.argv[1])
import torch  # noqa: E402

import dws_equiv  # noqa: E402
import neuralgraph as ng  # noqa: E402
from dws_equiv.ng import NGGNN, NGTransformer  # noqa: E402

assert dws_equiv.__file__.startswith(sys.argv[1]), dws_equiv.__file__
CONFIGS = [
    dict(model="nggnn", widths=[2, 6, 5, 1], head="invariant", use_probes=True),
    dict(model="nggnn", widths=[2, 8, 1], head="equivariant", use_probes=False),
    dict(model="ngt", widths=[2, 6, 5, 1], head="invariant", use_probes=True),
    dict(model="ngt", widths=[3, 4, 4, 4, 2], head=None, use_probes=False),
]
out = []
for k, cfg in enumerate(CONFIGS):
    widths = cfg["widths"]
    gen = torch.Generator().manual_seed(200 + k)
    W = [torch.randn(3, o, i, generator=gen) / i ** 0.5 for i, o in zip(widths[:-1], widths[1:])]
    b = [torch.randn(3, o, generator=gen) * 0.3 for o in widths[1:]]
    batch = ng.stacked_to_batch(W, b, ng.mlp_architecture(widths, "sine"))
    torch.manual_seed(k)
    cls = NGGNN if cfg["model"] == "nggnn" else NGTransformer
    net = cls(4, hidden=8, num_layers=2, head=cfg["head"], use_probes=cfg["use_probes"], n_probes=3,
              max_in=3, max_out=2).eval()
    with torch.no_grad():
        y = net(batch)
    if cfg["head"] == "equivariant":
        y = [y.x, y.edge_attr]
    elif cfg["head"] is None:
        y = list(y)
    else:
        y = [y]
    out.append({"config": cfg, "W": W, "b": b, "state_dict": net.state_dict(), "outputs": y})
torch.save(out, sys.argv[2])
print(f"wrote {len(out)} cases to {sys.argv[2]}")
