"""Side-by-side step time of the processors in two checkouts (e.g. before and after a refactor).

    git worktree add /tmp/before <rev>
    python benchmarks/ab_processors.py --a /tmp/before --b . [--rounds 5] [--threads 2]

A workload is ``model:batch[:kind]``: DWSNet, NG-GNN or NG-T, forward + cross-entropy +
backward (+ an AdamW step), on ``batch`` graphs of one of two kinds:

* ``mixed`` (default): MLPs of 2-4 layers and four widths (the scatter path);
* ``siren``: SIREN ``[2, 32, 32, 1]`` INRs of one architecture, as INR datasets batch them
  (the uniform path where a checkout has one). Models as in the "Faster processors" issue:
  hidden 32 x 4 layers, NG models with 16 probes.

The two checkouts run alternately in fresh subprocesses, ``--rounds`` times each (A, B, A,
B, ...), so machine noise hits both alike; each subprocess reports the best of ``--steps``
timed steps after one warm-up. ``--clock cpu`` times with the process's CPU time (robust
when other jobs share the machine), ``wall`` (default) with the wall clock. Printed: the
median over rounds of each side, graphs/s and the ratio B / A of seconds (below 1: B is
faster). Only public APIs that both checkouts share are used (``neuralgraph.to_graph``,
``neuralgraph.stacked_to_batch``, ``dws_equiv``); the models are built with positional sizes
so renamed keyword arguments do not matter.
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
kind, B = {kind!r}, {batch}
if kind == "siren":
    arch = ng.mlp_architecture([2, 32, 32, 1], "sine")
    g = torch.Generator().manual_seed(0)
    W = [torch.randn(B, o, i, generator=g) / i ** 0.5 for i, o in zip(arch.widths[:-1], arch.widths[1:])]
    b = [torch.randn(B, o, generator=g) * 0.1 for o in arch.widths[1:]]
    batch = ng.stacked_to_batch(W, b, arch)
else:
    widths = [[2, 16, 16, 1], [2, 32, 1], [2, 8, 8, 8, 1], [2, 24, 16, 1]]
    models = []
    for i in range(B):
        w = widths[i % len(widths)]
        layers = []
        for a, b in zip(w[:-1], w[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        models.append(nn.Sequential(*layers[:-1]))
    batch = Batch.from_data_list([ng.to_graph(m) for m in models])
y = torch.randint(0, 10, (B,))
name = {name!r}
layers, probes = (4, 16) if kind == "siren" else (3, 8)
if name == "dwsnet":
    net = DWSNet(10, hidden=32, num_layers=4, max_in=2, max_out=1)
elif name == "nggnn":
    net = NGGNN(10, 32, layers, use_probes=True, n_probes=probes)
else:
    net = NGTransformer(10, 32, layers, use_probes=True, n_probes=probes)
opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
clock = time.process_time if {clock!r} == "cpu" else time.perf_counter

def step():
    loss = nn.functional.cross_entropy(net(batch), y)
    opt.zero_grad()
    loss.backward()
    opt.step()

step()
best = float("inf")
for _ in range({steps}):
    t = clock(); step(); best = min(best, clock() - t)
print(json.dumps({{"seconds": best}}))
"""


def run(repo: str, name: str, batch: int, kind: str, steps: int, threads: int, clock: str) -> float:
    """Best seconds per step of one workload in a fresh subprocess importing ``repo``."""
    code = CHILD.format(repo=str(Path(repo).resolve()), name=name, batch=batch, kind=kind, steps=steps,
                        threads=threads, clock=clock)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="checkout A (e.g. a worktree of the old revision)")
    p.add_argument("--b", default=".", help="checkout B (default: this one)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall clock or process CPU time")
    p.add_argument("--workloads", nargs="+", default=["dwsnet:64", "dwsnet:512", "nggnn:64", "ngt:64"],
                   help="model:batch[:kind], kind 'mixed' (default) or 'siren'")
    args = p.parse_args()
    print("| workload | A (s/step) | B (s/step) | A graphs/s | B graphs/s | B / A |\n|---|---|---|---|---|---|")
    for w in args.workloads:
        name, batch, *kind = w.split(":")
        kind = kind[0] if kind else "mixed"
        times = {"a": [], "b": []}
        for _ in range(args.rounds):
            for side in ("a", "b"):
                times[side].append(run(getattr(args, side), name, int(batch), kind, args.steps, args.threads,
                                       args.clock))
        a, b = statistics.median(times["a"]), statistics.median(times["b"])
        n = int(batch)
        print(f"| {name}, {batch} {kind} graphs | {a:.4f} | {b:.4f} | {n / a:.0f} | {n / b:.0f} | {b / a:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
