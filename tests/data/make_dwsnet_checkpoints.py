"""Write dwsnet_scatter_checkpoints.pt: DWSNet state_dicts and their eval-mode outputs, made by a checkout
of the library from before the dense path (scatter path only), for tests/test_dws_dense.py.

    git worktree add /tmp/before <rev> && python tests/data/make_dwsnet_checkpoints.py /tmp/before <rev> \
        tests/data/dwsnet_scatter_checkpoints.pt

(made at rev 004b746, the last commit before the dense path). Each case stores its config, the stacked
weights ``W`` / biases ``b`` of its uniform batch, the state_dict flattened (``names``, ``shapes``,
``flat``: one tensor, to keep the file small) and the outputs.
"""
import sys
sys.path.insert(0, sys.argv[1])
import torch
import neuralgraph as ng
import dws_equiv
from dws_equiv import DWSNet
assert dws_equiv.__file__.startswith(sys.argv[1]), dws_equiv.__file__
CONFIGS = [
    dict(widths=[2, 6, 5, 1], head="invariant", tying="relation", reduce="mean", pair_mixing="factorized"),
    dict(widths=[3, 4, 4, 4, 2], head="invariant", tying="full", reduce="max", pair_mixing="full"),
    dict(widths=[2, 5, 1], head="equivariant", tying="relation", reduce="sum", pair_mixing="factorized"),
    dict(widths=[2, 3, 4, 2], head=None, tying="relation", reduce="max", pair_mixing="full"),
]
out = []
for k, cfg in enumerate(CONFIGS):
    widths = cfg["widths"]
    gen = torch.Generator().manual_seed(100 + k)
    W = [torch.randn(4, o, i, generator=gen) for i, o in zip(widths[:-1], widths[1:])]
    b = [torch.randn(4, o, generator=gen) for o in widths[1:]]
    batch = ng.stacked_to_batch(W, b, ng.mlp_architecture(widths, "relu"))
    torch.manual_seed(k)
    kw = dict(depths=[len(widths) - 1]) if cfg["tying"] == "full" else {}
    net = DWSNet(3 if cfg["head"] == "invariant" else None, head=cfg["head"], hidden=6, num_layers=2, tying=cfg["tying"],
                 reduce=cfg["reduce"], pair_mixing=cfg["pair_mixing"], max_in=3, max_out=2, **kw)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))     # non-zero affine biases, norms off their init
    net.eval()
    with torch.no_grad():
        y = net(batch)
    if cfg["head"] == "equivariant":
        y = {"x": y.x, "edge_attr": y.edge_attr}
    elif cfg["head"] is None:
        y = {"x": y[0], "edge_attr": y[1]}
    else:
        y = {"logits": y}
    sd = net.state_dict()
    out.append({"config": cfg, "W": W, "b": b, "names": list(sd), "shapes": [tuple(v.shape) for v in sd.values()],
                "flat": torch.cat([v.reshape(-1) for v in sd.values()]), "outputs": y})
torch.save({"source": sys.argv[2], "cases": out}, sys.argv[3])
