"""NG-GNN / NG-T training-step throughput and memory on SIREN INR graphs.

    python benchmarks/bench_ng.py [--threads 2] [--device cpu|cuda] [--repeats 3]

Table 1: forward + backward (invariant head, 10 outputs, 4 layers, probes on) graphs/s,
best of ``--repeats``, and peak memory, for batches of SIREN ``[2, 32, 32, 1]`` graphs with
random weights (``ng.stacked_to_batch``). Every configuration runs in a fresh process, so its
peak is its own: on CPU the peak is the growth of the process's max RSS over its RSS after
building the batch and the model (allocator caching included); on CUDA it is
``torch.cuda.max_memory_allocated`` (tensors only).

Table 2: the largest hidden width ``w`` of a ``[2, w, w, 1]`` SIREN whose forward + backward
at batch 1 fits in ``--budget-gib`` (8 GiB). Widths double from 32, then bisect. On CPU the
search stops at ``--max-width`` or ``--time-limit`` (a shared machine should not allocate
8 GiB); the report then says "> w measured" and gives a linear extrapolation of peak memory
in the number of edges (all large tensors are ``[2E, H]``), marked as an estimate.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import torch

import neuralgraph as ng

GIB = 1024 ** 3


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _batch(width: int, batch: int, device: str):
    arch = ng.mlp_architecture([2, width, width, 1], "sine")
    g = torch.Generator().manual_seed(0)
    W = [torch.randn(batch, o, i, generator=g) / i ** 0.5 for i, o in zip(arch.widths[:-1], arch.widths[1:])]
    b = [torch.randn(batch, o, generator=g) * 0.1 for o in arch.widths[1:]]
    return ng.stacked_to_batch(W, b, arch).to(device)


def _worker(model_name: str, hidden: int, width: int, batch: int, device: str, threads: int,
            repeats: int) -> tuple[float, int]:
    """(best seconds per step, peak bytes) of one configuration, in this (fresh) process."""
    torch.set_num_threads(threads)
    from dws_equiv.ng import NGGNN, NGTransformer

    torch.manual_seed(0)
    cls = NGGNN if model_name == "NG-GNN" else NGTransformer
    model = cls(out_dim=10, hidden=hidden, num_layers=4, head="invariant").to(device)
    data = _batch(width, batch, device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(data).square().mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    base = _rss_bytes()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - start
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return min(times), peak


def run(pool, *args) -> tuple[float, int] | None:
    """One configuration in a fresh process; None if it ran out of memory."""
    try:
        return pool.apply(_worker, args)
    except (RuntimeError, MemoryError) as err:  # e.g. torch.cuda.OutOfMemoryError
        if "out of memory" in str(err).lower() or isinstance(err, MemoryError):
            return None
        raise


def fresh(ctx):
    return ctx.Pool(1, maxtasksperchild=1)


def largest_width(ctx, model_name: str, hidden: int, args) -> str:
    """Doubling then bisection over widths; returns the table cell text."""
    budget = args.budget_gib * GIB
    t0 = time.perf_counter()
    points: list[tuple[int, int]] = []  # (edges, peak) of the runs that fit
    fit, fail, stop = 0, None, ""

    def measure(w: int) -> int | None:
        with fresh(ctx) as pool:
            r = run(pool, model_name, hidden, w, 1, args.device, args.threads, 1)
        if r is not None and r[1] <= budget:
            points.append((2 * w + w * w + w, r[1]))
        return None if r is None else r[1]

    w = 32
    while True:
        if w > args.max_width:
            stop = f"width limit {args.max_width}"
            break
        if time.perf_counter() - t0 > args.time_limit:
            stop = f"time limit {args.time_limit:.0f} s"
            break
        peak = measure(w)
        if peak is None or peak > budget:
            fail = w
            break
        fit, w = w, 2 * w
    while fail is not None and fail - fit > max(8, fit // 32) and time.perf_counter() - t0 <= args.time_limit:
        mid = (fit + fail) // 2
        peak = measure(mid)
        if peak is None or peak > budget:
            fail = mid
        else:
            fit = mid
    if fail is not None:
        return f"{fit} (measured; {fail} does not fit)"
    text = f"> {fit} measured (stopped: {stop})"
    if len(points) >= 2:  # least-squares line peak = a + b * edges over the measured widths
        e = torch.tensor([p[0] for p in points], dtype=torch.float64)
        m = torch.tensor([p[1] for p in points], dtype=torch.float64)
        b = ((e - e.mean()) * (m - m.mean())).sum() / ((e - e.mean()) ** 2).sum()
        a = m.mean() - b * e.mean()
        if b > 0:
            edges = float((budget - a) / b)  # w^2 + 3w = edges
            w_est = int((-3 + (9 + 4 * edges) ** 0.5) / 2)
            text += f"; ~{w_est} extrapolated (estimate: {b.item() / 1024:.1f} KiB per edge)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per configuration (best is reported)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--budget-gib", type=float, default=8.0)
    parser.add_argument("--max-width", type=int, default=None,
                        help="largest INR width tried in the memory search (default: 256 on CPU, 8192 on CUDA)")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per model for the width search")
    parser.add_argument("--skip-width-search", action="store_true")
    args = parser.parse_args()
    if args.max_width is None:
        args.max_width = 256 if args.device == "cpu" else 8192
    ctx = mp.get_context("spawn")
    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    peak_kind = "max_memory_allocated" if args.device == "cuda" else "peak RSS growth"
    print(f"SIREN [2, 32, 32, 1] (67 nodes, 1,120 edges per graph); 4 layers, probes on; {dev}")
    print()
    print(f"| model | hidden | batch | fwd+bwd graphs/s | peak memory ({peak_kind}) |")
    print("|---|---|---|---|---|")
    for model_name in ("NG-GNN", "NG-T"):
        for hidden in args.hidden:
            for batch in args.batches:
                with fresh(ctx) as pool:
                    r = run(pool, model_name, hidden, 32, batch, args.device, args.threads, args.repeats)
                cell = "out of memory" if r is None else f"{batch / r[0]:,.0f} | {r[1] / 2 ** 20:,.0f} MiB"
                print(f"| {model_name} | {hidden} | {batch} | {cell} |", flush=True)
    if args.skip_width_search:
        return
    print()
    print(f"Largest SIREN [2, w, w, 1] at batch 1 within {args.budget_gib:g} GiB (hidden 64, fwd+bwd, {peak_kind}):")
    print()
    print("| model | largest width |")
    print("|---|---|")
    for model_name in ("NG-GNN", "NG-T"):
        print(f"| {model_name} | {largest_width(ctx, model_name, 64, args)} |", flush=True)


if __name__ == "__main__":
    main()
