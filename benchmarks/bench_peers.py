"""DWSNet against nfn's HNP invariant network (Zhou et al., NeurIPS 2023), side by side.

    python benchmarks/bench_peers.py [--peer-python ~/peers/nfn_venv/bin/python]
        [--channels 16 32] [--batches 64 256] [--threads 1] [--rounds 3] [--steps 5] [--ng]

Workload: SIREN [2, 32, 32, 1] networks with random weights (one fixed seed; both sides get
the same networks), forward + cross-entropy (10 classes) + backward, graphs per second.

* ``dwsnet dense``: our ``DWSNet(10, hidden=C, num_layers=4, max_in=2, max_out=1)`` on the
  neural-graph batch of ``neuralgraph.stacked_to_batch`` (uniform, so the dense path);
  its layout detection is inside the timed forward.
* ``dwsnet scatter``: the same model with ``dense_path = False`` (gather/scatter path), for
  reference.
* ``nfn HNP``: built as nfn's own example invariant classifier (``examples/basic_cnn/
  check_nfn_inv.py`` of the nfn repository, with the HNP layer of its ``InvariantNFN``): 4
  ``HNPLinear`` layers of C channels, each followed by ``TupleOp(ReLU)``, then ``HNPPool``,
  ``Flatten`` and an MLP head with one hidden layer of 4C (the size of DWSNet's head), on
  nfn's ``WeightSpaceFeatures`` (``[B, 1, d_m, d_{m-1}]`` weights, ``[B, 1, d_m]`` biases).
  nfn has no norm layer here; DWSNet's default has a LayerNorm after every layer (kept,
  since that is the model users train).
* ``--ng``: also NG-GNN and NG-T (``dws_equiv.ng``, hidden C, 4 layers), for orientation.

The peer runs in its own virtual environment (``--peer-python``; nfn is never a dependency
of this project)::

    python3 -m venv ~/peers/nfn_venv && ~/peers/nfn_venv/bin/pip install torch==2.13.0 nfn numpy

(nfn imports numpy without declaring it.)

Each (model, channels, batch) runs ``--rounds`` times in a fresh subprocess, the models
alternating (A, B, C, A, B, C, ...) so that load on a shared machine hits them alike; each
subprocess reports its best of ``--steps`` timed steps after two warm-up steps. Printed: the
median over rounds of graphs/s, and each model's speed over nfn's: the median over rounds of
the ratio within a round (runs next to each other in time, so a load that drifts over the
minutes of a run moves both sides), with its range over rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
WIDTHS = [2, 32, 32, 1]
CLASSES = 10

_TIMER = r"""
def timed(step, steps):
    import time
    step(); step()
    best = float("inf")
    for _ in range(steps):
        t = time.perf_counter(); step(); best = min(best, time.perf_counter() - t)
    return best
"""

OURS = _TIMER + r"""
import json, sys
sys.path.insert(0, {repo!r})
import torch
from torch import nn
import neuralgraph as ng
torch.set_num_threads({threads})
data = torch.load({data!r})
W, b, y = data["W"], data["b"], data["y"]
batch = ng.stacked_to_batch(W, b, ng.mlp_architecture({widths!r}, "sine"))
torch.manual_seed(0)
name = {name!r}
if name.startswith("dwsnet"):
    from dws_equiv import DWSNet
    net = DWSNet({classes}, hidden={channels}, num_layers=4, max_in={widths!r}[0], max_out={widths!r}[-1])
    net.dense_path = name == "dwsnet dense"
elif name == "ng-gnn":
    from dws_equiv.ng import NGGNN
    net = NGGNN({classes}, {channels}, 4)
else:
    from dws_equiv.ng import NGTransformer
    net = NGTransformer({classes}, {channels}, 4)

def step():
    net.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(net(batch), y).backward()

print(json.dumps({{"seconds": timed(step, {steps})}}))
"""

PEER = _TIMER + r"""
import json
import torch
from torch import nn
from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
from nfn.layers import HNPLinear, HNPPool, TupleOp
torch.set_num_threads({threads})
data = torch.load({data!r})
feats = WeightSpaceFeatures([w.unsqueeze(1) for w in data["W"]], [v.unsqueeze(1) for v in data["b"]])
y = data["y"]
spec = network_spec_from_wsfeat(feats)
torch.manual_seed(0)
C = {channels}
layers = []
for i in range(4):
    layers += [HNPLinear(spec, 1 if i == 0 else C, C), TupleOp(nn.ReLU())]
net = nn.Sequential(*layers, HNPPool(spec), nn.Flatten(start_dim=-2),
                    nn.Linear(C * HNPPool.get_num_outs(spec), 4 * C), nn.ReLU(), nn.Linear(4 * C, {classes}))

def step():
    net.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(net(feats), y).backward()

print(json.dumps({{"seconds": timed(step, {steps})}}))
"""


def make_data(B: int, path: Path, seed: int = 0) -> None:
    """``B`` random SIREN-shaped weight sets and labels, saved for both sides."""
    gen = torch.Generator().manual_seed(seed)
    W = [torch.randn(B, o, i, generator=gen) / i ** 0.5 for i, o in zip(WIDTHS[:-1], WIDTHS[1:])]
    b = [0.1 * torch.randn(B, o, generator=gen) for o in WIDTHS[1:]]
    torch.save({"W": W, "b": b, "y": torch.randint(0, CLASSES, (B,), generator=gen)}, path)


def run_child(python: str, template: str, **fmt) -> float:
    """Seconds per step reported by one fresh subprocess."""
    code = template.format(widths=WIDTHS, classes=CLASSES, repo=str(REPO), **fmt)
    out = subprocess.run([python, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": str(fmt["threads"])})
    if out.returncode != 0:
        raise RuntimeError(f"{fmt.get('name', 'peer')} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def check_peer(python: str) -> str | None:
    """``None`` if ``python`` exists and imports nfn, else why not."""
    if not Path(python).exists():
        return f"peer python {python} does not exist"
    out = subprocess.run([python, "-c", "import nfn.layers, torch; print(torch.__version__)"],
                         capture_output=True, text=True)
    return None if out.returncode == 0 else f"{python} cannot import nfn: {out.stderr.strip()[-500:]}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer-python", default=str(Path("~/peers/nfn_venv/bin/python").expanduser()),
                   help="python of the virtual environment with nfn installed")
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32])
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--ng", action="store_true", help="also time NG-GNN and NG-T")
    args = p.parse_args()
    problem = check_peer(args.peer_python)
    if problem:
        print(f"PEER ENVIRONMENT MISSING: {problem}\nCreate it with:\n  python3 -m venv ~/peers/nfn_venv && "
              "~/peers/nfn_venv/bin/pip install torch==2.13.0 nfn numpy\nor pass --peer-python. Timing our models only.",
              file=sys.stderr)
    models = ["dwsnet dense", "dwsnet scatter"] + (["ng-gnn", "ng-t"] if args.ng else [])
    if not problem:
        models.append("nfn HNP")
    print(f"SIREN {WIDTHS}, forward + cross-entropy + backward, {args.threads} thread(s), median over "
          f"{args.rounds} fresh processes of the best of {args.steps} steps")
    print("| model | channels | batch | graphs/s | vs nfn HNP (range) |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for C in args.channels:
            for B in args.batches:
                data = Path(tmp) / f"siren_{B}.pt"
                if not data.exists():
                    make_data(B, data)
                times = {m: [] for m in models}
                for _ in range(args.rounds):
                    for m in models:
                        fmt = dict(data=str(data), channels=C, threads=args.threads, steps=args.steps)
                        if m == "nfn HNP":
                            times[m].append(run_child(args.peer_python, PEER, **fmt))
                        else:
                            times[m].append(run_child(sys.executable, OURS, name=m, **fmt))
                rate = {m: B / statistics.median(t) for m, t in times.items()}
                for m in models:
                    ratio = "n/a"
                    if "nfn HNP" in times:               # per round (neighbours in time), then the median
                        per_round = sorted(p / q for p, q in zip(times["nfn HNP"], times[m]))
                        ratio = f"{statistics.median(per_round):.2f}x ({per_round[0]:.2f}-{per_round[-1]:.2f})"
                    print(f"| {m} | {C} | {B} | {rate[m]:,.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
