"""Training-step time with glibc's default allocator and with :func:`neuralgraph.allocator.keep_freed_memory`.

    python benchmarks/bench_allocator.py [--rounds 3] [--steps 4] [--workloads ngt:128 dwsnet:512 ...]

Each workload ``model:batch`` is one training step (forward + cross-entropy + backward + AdamW) of the
processor the paper-scale reproduction trains (``benchmarks/reproduce_inr_classification.py``: NG-GNN
32 x 4 and NG-T 64 x 4 with 8 heads, no probes; DWSNet 32 x 4, max reduction) on ``batch`` SIREN
``[2, 32, 32, 1]`` graphs, at the reproduction's batch sizes by default. The two allocators run
alternately in fresh one-thread subprocesses (``default``, ``heap``, ``default``, ...); each child reports
the user and system CPU seconds of its best step after one warm-up step, and the growth of its peak RSS.
Printed: medians over rounds, graphs/s from user + system time, and one epoch of 55,000 training INRs
(steps only, no evaluation) at that rate.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys
sys.path.insert(0, {repo!r})
import torch
from torch import nn
if {heap!r}:
    from neuralgraph.allocator import keep_freed_memory
    assert keep_freed_memory(), "the allocator could not be changed (not glibc, or MALLOC_* set)"
import neuralgraph as ng
from dws_equiv import DWSNet
from dws_equiv.ng import NGGNN, NGTransformer

torch.set_num_threads(1)
torch.manual_seed(0)
B, name = {batch}, {name!r}
arch = ng.mlp_architecture([2, 32, 32, 1], "sine")
g = torch.Generator().manual_seed(0)
W = [torch.randn(B, o, i, generator=g) / i ** 0.5 for i, o in zip(arch.widths[:-1], arch.widths[1:])]
b = [torch.randn(B, o, generator=g) * 0.1 for o in arch.widths[1:]]
batch = ng.stacked_to_batch(W, b, arch)
y = torch.randint(0, 10, (B,))
if name == "dwsnet":
    net = DWSNet(10, hidden=32, num_layers=4, reduce="max", max_in=2, max_out=1)
elif name == "nggnn":
    net = NGGNN(10, 32, 4, use_probes=False, max_in=2, max_out=1, max_taps=1)
else:
    net = NGTransformer(10, 64, 4, attn_heads=8, use_probes=False, max_in=2, max_out=1, max_taps=1)
opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=5e-4, amsgrad=True)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def step():
    loss = nn.functional.cross_entropy(net(batch), y)
    opt.zero_grad()
    loss.backward()
    opt.step()

step()
best = None
for _ in range({steps}):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    step()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    t = (r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime)
    best = t if best is None or sum(t) < sum(best) else best
rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
print(json.dumps({{"user": best[0], "sys": best[1], "rss_mib": rss}}))
"""


def run(name: str, batch: int, heap: bool, steps: int) -> dict:
    """One child's best step (user and system seconds) and peak-RSS growth."""
    code = CHILD.format(repo=str(REPO), name=name, batch=batch, heap=heap, steps=steps)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{name}:{batch} ({'heap' if heap else 'default'}) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--workloads", nargs="+", default=["nggnn:128", "ngt:128", "dwsnet:512"], help="model:batch")
    args = p.parse_args()
    print("| workload | allocator | user s/step | sys s/step | graphs/s | epoch of 55,000 (min) | peak RSS growth |\n"
          "|---|---|---|---|---|---|---|")
    for w in args.workloads:
        name, batch = w.split(":")
        rows = {False: [], True: []}
        for _ in range(args.rounds):
            for heap in (False, True):
                rows[heap].append(run(name, int(batch), heap, args.steps))
        for heap in (False, True):
            med = {k: statistics.median(r[k] for r in rows[heap]) for k in ("user", "sys", "rss_mib")}
            sec = med["user"] + med["sys"]
            rate = int(batch) / sec
            print(f"| {name}, batch {batch} | {'heap' if heap else 'default'} | {med['user']:.3f} | {med['sys']:.3f} "
                  f"| {rate:.1f} | {55000 / rate / 60:.1f} | {med['rss_mib']:,.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
