"""DWSNet throughput: its dense and gather/scatter paths vs a dense einsum DWS on stacked weights.

    python benchmarks/bench_dws.py [--threads 2] [--device cpu|cuda] [--repeats 5]

Model: a 4-layer DWSNet classifier (hidden 32, out_dim 10, max_in=2, max_out=1,
tying="relation", mean pooling), timed as forward + cross-entropy + backward
(graphs/s, best of ``--repeats``; the machine may be shared). On the uniform SIREN
batch it takes its dense path (per-layer tensors, no index); "scatter" is the same
model with ``dense_path = False`` (its ``DWSIndex`` rebuilt inside every forward, as in
training). The mixed batch always takes the scatter path. For DWSNet against nfn's
HNP network see ``benchmarks/bench_peers.py``.

Reference ("dense"): the same structure (4 DWS layers, per-element LayerNorm +
ReLU, the same pooled readout, the same 2-layer MLP head) built from
``tests/dense_dws_reference.py``'s ``DenseDWS``: one einsum per term of the
complete layer for *one fixed architecture* (tying="full", position-dependent
parameters), on stacked ``[B, d_m, d_{m-1}, C]`` tensors. A heterogeneous batch
has no single stacked form; the dense model then runs once per architecture
group (one parameter set per architecture), which is what a dense
implementation has to do.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over one step, minus
what was allocated before it (inputs, parameters, gradients). On CPU, torch
allocations are invisible to ``tracemalloc``; each configuration runs in a fresh
subprocess (glibc told to serve allocations >= 128 KiB by mmap, so freed tensors
leave the resident set and new ones enter it) after one warm-up step, and the
figure is the peak resident set during one forward+backward (``VmHWM``, reset
through ``/proc/self/clear_refs``) minus the resident set just before it. It
counts every byte the step touches, allocator overhead included.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # the dense reference lives with the tests

import neuralgraph as ng  # noqa: E402
from dense_dws_reference import DenseDWS  # noqa: E402
from dws_equiv import DWSNet  # noqa: E402

HIDDEN, LAYERS, OUT = 32, 4, 10
SIREN = [2, 32, 32, 1]
HETERO = [[2, 32, 1], [2, 16, 16, 1], [2, 32, 32, 1], [2, 24, 24, 24, 1], [2, 8, 32, 16, 1], [2, 32, 32, 32, 1],
          [2, 12, 1], [2, 20, 28, 1]]


# ---------------------------------------------------------------------------------------------
# dense reference model
# ---------------------------------------------------------------------------------------------

class DenseLayer(nn.Module):
    """A ``DenseDWS`` whose parameters are registered (so they train) for one architecture."""

    def __init__(self, widths, c_in: int, c_out: int) -> None:
        super().__init__()
        self.dws = DenseDWS(widths, c_in, c_out, reduce="mean", dtype=torch.float32)
        self.theta = nn.ParameterList(nn.Parameter(self.dws.theta[t]) for t in self.dws.terms)
        self.bias = nn.ParameterList(nn.Parameter(self.dws.bias[y]) for y in self.dws.objects)

    def forward(self, W: list[Tensor], b: list[Tensor]):
        self.dws.theta = dict(zip(self.dws.terms, self.theta))
        self.dws.bias = dict(zip(self.dws.objects, self.bias))
        with torch.device(W[0].device):        # DenseDWS allocates its outputs on the default device
            return self.dws(W, b)


class DenseDWSNet(nn.Module):
    """Dense counterpart of ``DWSNet(head="invariant", reduce="mean")`` for one architecture."""

    def __init__(self, widths, hidden: int = HIDDEN, num_layers: int = LAYERS, out_dim: int = OUT) -> None:
        super().__init__()
        self.widths = list(widths)
        self.layers = nn.ModuleList(DenseLayer(widths, 1 if i == 0 else hidden, hidden) for i in range(num_layers))
        self.node_norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.edge_norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        d_in, d_out = widths[0], widths[-1]
        feats = hidden * (4 + d_in + 2 * d_out)
        self.mlp = nn.Sequential(nn.Linear(feats, 4 * hidden), nn.ReLU(), nn.Dropout(0.0), nn.Linear(4 * hidden, out_dim))

    def forward(self, W: list[Tensor], b: list[Tensor]) -> Tensor:
        for layer, node_norm, edge_norm in zip(self.layers, self.node_norms, self.edge_norms):
            W, b = layer(W, b)
            W = [torch.relu(edge_norm(w)) for w in W]
            b = [torch.relu(node_norm(v)) for v in b]
        B, M = W[0].shape[0], len(W)
        mid_b = torch.stack([v.mean(1) for v in b[1:M - 1]]).mean(0) if M > 2 else torch.zeros_like(b[0][:, 0])
        mid_w = torch.stack([w.mean((1, 2)) for w in W[1:M - 1]]).mean(0) if M > 2 else torch.zeros_like(b[0][:, 0])
        feats = torch.cat([b[0].mean(1), mid_b, b[M - 2].mean(1), mid_w,
                           W[0].mean(1).reshape(B, -1), W[-1].mean(2).reshape(B, -1), b[-1].reshape(B, -1)], 1)
        return self.mlp(feats)


# ---------------------------------------------------------------------------------------------
# workloads
# ---------------------------------------------------------------------------------------------

def random_stacked(widths, B: int, gen: torch.Generator):
    W = [torch.randn(B, o, i, generator=gen) / i ** 0.5 for i, o in zip(widths[:-1], widths[1:])]
    b = [0.1 * torch.randn(B, o, generator=gen) for o in widths[1:]]
    return W, b


def workload(name: str, B: int, device: str, seed: int = 0):
    """(message-passing model and batch, dense models with their stacked inputs, labels)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    groups = [SIREN] if name == "siren" else HETERO
    sizes = [B // len(groups) + (k < B % len(groups)) for k in range(len(groups))]
    graphs, dense = [], []
    for widths, n in zip(groups, sizes):
        W, b = random_stacked(widths, n, gen)
        graphs.append(ng.stacked_to_batch(W, b, ng.mlp_architecture(widths, "sine" if name == "siren" else "relu")))
        dense.append((DenseDWSNet(widths).to(device),
                      [w.unsqueeze(-1).to(device) for w in W], [v.unsqueeze(-1).to(device) for v in b]))
    batch = graphs[0] if len(graphs) == 1 else Batch.from_data_list([g for gb in graphs for g in gb.to_data_list()])
    mp = DWSNet(OUT, hidden=HIDDEN, num_layers=LAYERS, max_in=2, max_out=1, tying="relation").to(device)
    labels = torch.randint(0, OUT, (B,), generator=gen).to(device)
    return mp, batch.to(device), dense, labels


def mp_step(mp, batch, labels, dense_path: bool = True) -> None:
    mp.dense_path = dense_path
    mp.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(mp(batch), labels).backward()


def dense_step(dense, labels) -> None:
    logits = []
    for model, W, b in dense:
        model.zero_grad(set_to_none=True)
        logits.append(model(W, b))
    nn.functional.cross_entropy(torch.cat(logits), labels).backward()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_of_interleaved(fns, device: str, repeats: int) -> list[float]:
    """Best time of each function, runs interleaved (a, b, a, b, ...) so load changes on a shared
    machine hit both sides alike."""
    for fn in fns:
        fn()
    sync(device)
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            sync(device)
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def peak_memory_mib(name: str, B: int, which: str, device: str, threads: int) -> float:
    """Peak extra memory of one forward+backward (see module docstring)."""
    if device == "cuda":
        mp, batch, dense, labels = workload(name, B, device)
        fn = (lambda: mp_step(mp, batch, labels, which == "mp")) if which != "dense" else \
            (lambda: dense_step(dense, labels))
        fn()                                       # grads allocated, as in training
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    cmd = [sys.executable, __file__, "--_rss", f"{name},{B},{which}", "--threads", str(threads)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe {cmd} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["mib"]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _rss_child(spec: str) -> None:
    name, B, which = spec.split(",")
    mp, batch, dense, labels = workload(name, int(B), "cpu")
    step = (lambda: mp_step(mp, batch, labels, which == "mp")) if which != "dense" else \
        (lambda: dense_step(dense, labels))
    step()                                          # gradients exist, as in training
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")   # reset the peak (VmHWM) to the current RSS
    step()
    print(json.dumps({"mib": (_status_kib("VmHWM") - before) / 1024}))


def check_reference() -> float:
    """Largest |logit difference| between ``DenseDWSNet`` and ``DWSNet(tying="full", pair_mixing="full")``
    with the same parameters: the two models compute the same function (small sizes, float32)."""
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for widths in ([2, 6, 5, 1], [2, 4, 3, 3, 1]):
        W, b = random_stacked(widths, 4, gen)
        batch = ng.stacked_to_batch(W, b, ng.mlp_architecture(widths, "relu"))
        torch.manual_seed(0)
        mp = DWSNet(OUT, hidden=8, num_layers=3, max_in=2, max_out=1, tying="full", pair_mixing="full",
                    depths=[len(widths) - 1])
        dense = DenseDWSNet(widths, hidden=8, num_layers=3)
        with torch.no_grad():
            for dl, ml in zip(dense.layers, mp.layers):
                for p in ml.biases.values():
                    p.normal_(generator=gen)
                dl.dws.copy_from_layer(ml)
                for P, t in zip(dl.theta, dl.dws.terms):
                    P.copy_(dl.dws.theta[t])
                for P, y in zip(dl.bias, dl.dws.objects):
                    P.copy_(dl.dws.bias[y])
            dense.node_norms.load_state_dict(mp.node_norms.state_dict())
            dense.edge_norms.load_state_dict(mp.edge_norms.state_dict())
            dense.mlp.load_state_dict(mp.mlp.state_dict())        # same layout: max_in = d_in, max_out = d_out
            diff = mp(batch) - dense([w.unsqueeze(-1) for w in W], [v.unsqueeze(-1) for v in b])
        worst = max(worst, float(diff.abs().max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--_rss", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args._rss:
        _rss_child(args._rss)
        return
    print(f"check: dense reference vs DWSNet(tying='full', pair_mixing='full'), same parameters: "
          f"max |logit diff| = {check_reference():.1e}")
    mem = "CUDA max_memory_allocated" if args.device == "cuda" else "peak RSS over RSS before the step (fresh process, see docstring)"
    print(f"DWSNet classifier: {LAYERS} layers, hidden {HIDDEN}, out {OUT}, tying=relation, max_in=2, max_out=1; "
          f"forward+backward, best of {args.repeats}, {args.threads} threads, {args.device}; memory: {mem}")
    print("| batch | graphs | DWSNet (graphs/s) | DWSNet scatter path (graphs/s) | dense einsum (graphs/s) | "
          "DWSNet / einsum time | DWSNet peak (MiB) | scatter peak (MiB) | einsum peak (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = [("siren", B) for B in args.batches] + [("hetero", max(args.batches))]
    for name, B in rows:
        mp, batch, dense, labels = workload(name, B, args.device)
        t_mp, t_sc, t_dense = best_of_interleaved(
            [lambda: mp_step(mp, batch, labels), lambda: mp_step(mp, batch, labels, False),
             lambda: dense_step(dense, labels)], args.device, args.repeats)
        del mp, batch, dense
        m_mp, m_sc, m_dense = (peak_memory_mib(name, B, w, args.device, args.threads) for w in ("mp", "scatter", "dense"))
        what = f"SIREN {SIREN}" if name == "siren" else f"mixed: {len(HETERO)} archs, depth 2-4, widths 8-32"
        print(f"| {what} | {B} | {B / t_mp:,.0f} | {B / t_sc:,.0f} | {B / t_dense:,.0f} | {t_mp / t_dense:.2f}x | "
              f"{m_mp:,.0f} | {m_sc:,.0f} | {m_dense:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
