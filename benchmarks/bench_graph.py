"""Conversion throughput: stacked INR parameters <-> neural-graph batches, and hidden permutations.

    python benchmarks/bench_graph.py [--threads 2]

Measures the vectorised fast path the INR datasets use (networks/s) against
the per-network path (``to_graph`` + ``Batch.from_data_list``).
"""
from __future__ import annotations

import argparse
import time

import torch
from torch_geometric.data import Batch

import neuralgraph as ng
from neuralgraph.graph import graph_from_params


def best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arch = ng.mlp_architecture([2, 32, 32, 1], "sine")
    print(f"SIREN {list(arch.widths)}: {arch.num_nodes} nodes, {arch.num_edges} edges per graph, {args.threads} threads")
    print("| batch | stacked_to_batch (nets/s) | batch_to_stacked (nets/s) | permute_hidden (nets/s) | to_graph + from_data_list (nets/s) |")
    print("|---|---|---|---|---|")
    for B in (64, 512, 4096):
        W = [torch.randn(B, o, i) for i, o in zip(arch.widths[:-1], arch.widths[1:])]
        b = [torch.randn(B, o) for o in arch.widths[1:]]
        batch = ng.stacked_to_batch(W, b, arch)
        t_fast = best_of(lambda: ng.stacked_to_batch(W, b, arch))
        t_back = best_of(lambda: ng.batch_to_stacked(batch))
        t_perm = best_of(lambda: ng.permute_hidden(batch))
        n_slow = min(B, 512)
        t_slow = best_of(lambda: Batch.from_data_list(
            [graph_from_params([w[i] for w in W], [x[i] for x in b], arch) for i in range(n_slow)]), repeats=2)
        print(f"| {B} | {B / t_fast:,.0f} | {B / t_back:,.0f} | {B / t_perm:,.0f} | {n_slow / t_slow:,.0f} |")


if __name__ == "__main__":
    main()
