"""Memory of model -> graph conversion: graph bytes and peak RSS per weight.

    python benchmarks/bench_graph_memory.py [--width 4096]

Each measurement runs in a fresh subprocess so that its peak resident set
(``VmHWM``) belongs to one conversion only: the peak is reported above the
baseline of a process that has built the model but not converted it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
from torch import nn
import neuralgraph as ng

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

width = int(sys.argv[1])
torch.set_num_threads(1)
model = nn.Sequential(nn.Linear(width, width))
before = hwm()
t = time.perf_counter()
g = ng.to_graph(model)
seconds = time.perf_counter() - t
peak = hwm()
fields = {k: v.numel() * v.element_size() for k, v in g.items() if isinstance(v, torch.Tensor)}
print(json.dumps({"weights": model[0].weight.numel(), "seconds": seconds, "before": before, "peak": peak,
                  "fields": fields}))
"""


def measure(width: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(width)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=4096)
    args = parser.parse_args()
    r = measure(args.width)
    n = r["weights"]
    graph = sum(r["fields"].values())
    mib = 2 ** 20
    print(f"to_graph(nn.Sequential(nn.Linear({args.width}, {args.width}))): {n:,} weights "
          f"({n * 4 / mib:.0f} MiB float32)")
    print("| peak RSS | peak above model | graph tensors | graph B/weight | peak B/weight | time |")
    print("|---|---|---|---|---|---|")
    print(f"| {r['peak'] / mib:,.0f} MiB | {(r['peak'] - r['before']) / mib:,.0f} MiB | {graph / mib:,.0f} MiB | "
          f"{graph / n:.1f} | {(r['peak'] - r['before']) / n:.1f} | {r['seconds']:.2f} s |")
    print("graph fields (B/weight): " + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(r["fields"].items(),
                                                                                      key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
