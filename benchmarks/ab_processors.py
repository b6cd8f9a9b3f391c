"""Side-by-side step time of the processors in two checkouts (e.g. before and after a refactor).

    git worktree add /tmp/before <rev>
    python benchmarks/ab_processors.py --a /tmp/before --b . [--rounds 5] [--threads 2]

For each workload (DWSNet, NG-GNN and NG-T on a heterogeneous batch of MLPs of 2-4
layers, forward + cross-entropy + backward), the two checkouts run alternately in
fresh subprocesses, ``--rounds`` times each (A, B, A, B, ...), so machine noise hits
both alike; each subprocess reports the best of ``--steps`` timed steps after one
warm-up. Printed: the median over rounds of each side and the ratio B / A (below 1:
B is faster). Only public APIs that both checkouts share are used
(``neuralgraph.to_graph``, ``dws_equiv``); the models are built with positional
sizes so renamed keyword arguments do not matter.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import torch
from torch import nn
from torch_geometric.data import Batch
import neuralgraph as ng
from dws_equiv import DWSNet
from dws_equiv.ng import NGGNN, NGTransformer

torch.set_num_threads({threads})
torch.manual_seed(0)
widths = [[2, 16, 16, 1], [2, 32, 1], [2, 8, 8, 8, 1], [2, 24, 16, 1]]
models = []
for i in range({batch}):
    w = widths[i % len(widths)]
    layers = []
    for a, b in zip(w[:-1], w[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    models.append(nn.Sequential(*layers[:-1]))
batch = Batch.from_data_list([ng.to_graph(m) for m in models])
y = torch.randint(0, 10, ({batch},))
name = {name!r}
if name == "dwsnet":
    net = DWSNet(10, hidden=32, num_layers=4, max_in=2, max_out=1)
elif name == "nggnn":
    net = NGGNN(10, 32, 3, use_probes=True, n_probes=8)
else:
    net = NGTransformer(10, 32, 3, use_probes=True, n_probes=8)
opt = torch.optim.SGD(net.parameters(), lr=1e-3)

def step():
    loss = nn.functional.cross_entropy(net(batch), y)
    opt.zero_grad()
    loss.backward()

step()
best = float("inf")
for _ in range({steps}):
    t = time.perf_counter(); step(); best = min(best, time.perf_counter() - t)
print(json.dumps({{"seconds": best}}))
"""


def run(repo: str, name: str, batch: int, steps: int, threads: int) -> float:
    code = CHILD.format(repo=str(Path(repo).resolve()), name=name, batch=batch, steps=steps, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="checkout A (e.g. a worktree of the old revision)")
    p.add_argument("--b", default=".", help="checkout B (default: this one)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workloads", nargs="+", default=["dwsnet:64", "dwsnet:512", "nggnn:64", "ngt:64"])
    args = p.parse_args()
    print("| workload | A (s/step) | B (s/step) | B / A |\n|---|---|---|---|")
    for w in args.workloads:
        name, batch = w.split(":")
        times = {"a": [], "b": []}
        for _ in range(args.rounds):
            for side in ("a", "b"):
                times[side].append(run(getattr(args, side), name, int(batch), args.steps, args.threads))
        a, b = statistics.median(times["a"]), statistics.median(times["b"])
        print(f"| {name}, {batch} graphs | {a:.4f} | {b:.4f} | {b / a:.3f} |", flush=True)


if __name__ == "__main__":
    main()
