"""Our processors against the official DWSNets and neural-graphs codes and nfn, side by side.

    python benchmarks/bench_peers.py [--suites nfn dwsnets ng] [--rounds 3] [--steps 5]
        [--clock cpu] [--threads 1] [--nfn-python ~/peers/nfn_venv/bin/python]
        [--official-python ~/peers/official_venv/bin/python]
        [--dwsnets-src ~/peers/dwsnets] [--ng-src ~/peers/neural_graphs]

Workload: SIREN [2, 32, 32, 1] networks with random weights (one fixed seed; every model gets
the same networks, each in its library's own input format), one training step: forward +
cross-entropy (10 classes) + backward + ``AdamW(lr=1e-3, weight_decay=5e-4, amsgrad=True)``
(the optimiser of both official INR-classification experiments; no gradient clipping on any
side), in its multi-tensor ``foreach`` implementation on every side, as this library's trainer
runs it (``--optimizer-loop loop``: torch's per-tensor CPU default; both give the same bits).
Reported: graphs per second and the growth of the peak RSS over the steps.

Suites (each peer against our nearest model):

* ``nfn``: nfn's HNP invariant network (Zhou et al., NeurIPS 2023), built as nfn's own example
  invariant classifier (``examples/basic_cnn/check_nfn_inv.py`` of the nfn repository, with the
  HNP layer of its ``InvariantNFN``): 4 ``HNPLinear`` layers of C channels, each followed by
  ``TupleOp(ReLU)``, then ``HNPPool``, ``Flatten`` and an MLP head with one hidden layer of 4C,
  on nfn's ``WeightSpaceFeatures`` (``[B, 1, d_m, d_{m-1}]`` weights, ``[B, 1, d_m]`` biases);
  against our ``DWSNet(10, hidden=C, num_layers=4, max_in=2, max_out=1)`` on the dense path
  (``dwsnet dense``) and the gather/scatter path (``dwsnet scatter``), ``--channels`` x
  ``--nfn-batches``. ``--ng`` adds NG-GNN / NG-T (hidden C, 4 layers, 16 probes) for orientation.
* ``dwsnets``: the official DWSNets ``DWSModelForClassification`` (AvivNavon/DWSNets) with the
  defaults of its MNIST INR-classification trainer (``experiments/mnist/trainer.py``: hidden 32,
  4 hidden layers, reduction max, SAB set layers with 8 heads, one FC layer per block, batch norm
  on, dropout 0) on its dataset's tensors (``[B, in, out, 1]`` weights, ``[B, out, 1]`` biases,
  as its ``INRDataset`` returns them); against our ``DWSNet(10, hidden=32, num_layers=4,
  reduce="max", max_in=2, max_out=1)`` (dense path), ``--dwsnets-batches``.
* ``ng``: the official neural-graphs NG-GNN (``nn.gnn.GNNForClassification`` with its PNA
  backbone) and NG-T (``nn.relational_transformer.RelationalTransformer``) of mkofinas/
  neural-graphs, built by hydra from the repository's own ``experiments/inr_classification/
  configs`` (``model/pna.yaml`` / ``model/rtransformer.yaml`` with ``data/mnist.yaml``) and the
  overrides of its ``scripts/mnist_cls_pna.sh`` / ``mnist_cls_rt.sh`` (no probes, dropout 0.2,
  positional embeddings, reverse edge features for PNA, modulated values for NG-T), on the same
  dataset tensors as DWSNets; against our ``NGGNN(10, 32, 4, use_probes=False, scalers=
  ("identity", "amplification"))`` (PNA's two scalers) and ``NGTransformer(10, 64, 4,
  attn_heads=8, use_probes=False)``, position tables sized to the data as our trainer does
  (``max_in=2, max_out=1, max_taps=1``), ``--ng-batches``.

The peers run in their own virtual environments, from their own source folders; none of them is
ever a dependency of this project. Setup (see docs/processor-speed.md)::

    python3 -m venv ~/peers/nfn_venv && ~/peers/nfn_venv/bin/pip install torch==2.13.0 nfn numpy
    # official codes: a venv with the same torch, plus what neural-graphs imports
    ~/peers/official_venv/bin/pip install torch-geometric==2.3.0 hydra-core==1.3.8 einops
    ~/peers/official_venv/bin/pip install --no-deps random-fourier-features-pytorch==1.0.1
    # ~/peers/dwsnets: DWSNets' nn/ folder; ~/peers/neural_graphs: neural-graphs' nn/ and
    # experiments/inr_classification/configs/ (a clone of each repository works as is)

``rff`` (random-fourier-features-pytorch) imports torchvision in its package ``__init__`` for a
data loader that neural-graphs never uses, and no CPU build of torchvision matches torch 2.13
here; the child therefore loads ``rff.functional`` and ``rff.layers`` (the real
``GaussianEncoding``) without running that ``__init__``.

Every child checks what it was given: it converts its own input format back to torch layout and
reports a position-sensitive fingerprint of the weights and biases, which must equal the parent's
for the saved networks (so every side saw the same numbers in the right places), and it reports
its output's shape, which must be ``[B, 10]`` on every side; any mismatch stops the run.

Each (model, setting, batch) runs ``--rounds`` times in a fresh subprocess, the models of a
comparison alternating (peer, ours, then ours, peer, in the next round, and so on) so that load
on a shared machine hits them alike; each subprocess reports its best of ``--steps`` timed steps after two warm-up
steps (fewer timed steps when they exceed ``--budget`` seconds, at least one), timed with the
process's CPU time (``--clock cpu``, default: robust to the time slicing of a loaded machine, and
fair between steps of 50 ms and of 50 s) or the wall clock. ``--malloc no-mmap`` runs every child
with glibc's mmap off (``MALLOC_MMAP_MAX_=0``, no heap trimming): tensors over glibc's mmap
threshold (at most 32 MiB) are otherwise mapped and unmapped at every step, and the page
faults of that, counted as system time, grow faster than the batch. Printed: the median over rounds of
graphs/s and of peak-RSS growth, and each of our models' speed over the peer's: the median over
rounds of the ratio within a round (runs next to each other in time, so a load that drifts over
the minutes of a run moves both sides), with its range over rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
WIDTHS = [2, 32, 32, 1]
CLASSES = 10
PEERS = Path("~/peers").expanduser()

_COMMON = r"""
import json, resource, sys, time
import torch
torch.set_num_threads({threads})
data = torch.load({data!r})
W, b, y = data["W"], data["b"], data["y"]

def fingerprint(weights, biases):
    # position-sensitive: sum of each torch-layout tensor times fixed pseudo-random numbers
    g = torch.Generator().manual_seed(1234)
    return float(sum((t.double() * torch.rand(t.shape, generator=g, dtype=torch.float64)).sum()
                     for t in [*weights, *biases]))

def run(net, inputs, torch_layout):
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=5e-4, amsgrad=True, foreach={foreach})
    clock = time.process_time if {clock!r} == "cpu" else time.perf_counter

    def step():
        opt.zero_grad(set_to_none=True)
        out = net(inputs)
        torch.nn.functional.cross_entropy(out, y).backward()
        opt.step()
        return out

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shape = list(step().shape)
    step()
    best, spent, n = float("inf"), 0.0, 0
    while n < {steps} and (n == 0 or spent < {budget}):
        t = clock(); step(); dt = clock() - t
        best, spent, n = min(best, dt), spent + dt, n + 1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    print(json.dumps({{"seconds": best, "steps": n, "shape": shape, "rss_mib": rss / 1024,
                      "fingerprint": fingerprint(*torch_layout)}}))
"""

OURS = _COMMON + r"""
sys.path.insert(0, {repo!r})
import neuralgraph as ng
from dws_equiv import DWSNet
from dws_equiv.ng import NGGNN, NGTransformer
batch = ng.stacked_to_batch(W, b, ng.mlp_architecture({widths!r}, "sine"))
torch.manual_seed(0)
name, C, fit = {name!r}, {channels}, dict(max_in={widths!r}[0], max_out={widths!r}[-1])
if name in ("dwsnet dense", "dwsnet scatter"):
    net = DWSNet({classes}, hidden=C, num_layers=4, **fit)
    net.dense_path = name == "dwsnet dense"
elif name == "dwsnet max":
    net = DWSNet({classes}, hidden=C, num_layers=4, reduce="max", **fit)
elif name == "ng-gnn probes":
    net = NGGNN({classes}, C, 4)
elif name == "ng-t probes":
    net = NGTransformer({classes}, C, 4)
elif name == "ng-gnn":
    net = NGGNN({classes}, C, 4, use_probes=False, scalers=("identity", "amplification"), max_taps=1, **fit)
elif name == "ng-t":
    net = NGTransformer({classes}, C, 4, attn_heads=8, use_probes=False, max_taps=1, **fit)
else:
    raise ValueError(f"unknown model {{name!r}}")
run(net, batch, ng.batch_to_stacked(batch))
"""

PEER_NFN = _COMMON + r"""
from torch import nn
from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
from nfn.layers import HNPLinear, HNPPool, TupleOp
feats = WeightSpaceFeatures([w.unsqueeze(1) for w in W], [v.unsqueeze(1) for v in b])
spec = network_spec_from_wsfeat(feats)
torch.manual_seed(0)
C = {channels}
layers = []
for i in range(4):
    layers += [HNPLinear(spec, 1 if i == 0 else C, C), TupleOp(nn.ReLU())]
net = nn.Sequential(*layers, HNPPool(spec), nn.Flatten(start_dim=-2),
                    nn.Linear(C * HNPPool.get_num_outs(spec), 4 * C), nn.ReLU(), nn.Linear(4 * C, {classes}))
run(net, feats, ([w[:, 0] for w in feats.weights], [v[:, 0] for v in feats.biases]))
"""

# The dataset tensors of both official codes: INRDataset permutes each [out, in] weight to
# [in, out] and adds a feature axis; the DataLoader stacks them.
_OFFICIAL_INPUTS = r"""
inputs = (tuple(w.transpose(1, 2).unsqueeze(-1) for w in W), tuple(v.unsqueeze(-1) for v in b))
weight_shapes = tuple(w.shape[1:3] for w in inputs[0])
bias_shapes = tuple(v.shape[1:2] for v in inputs[1])
back = ([w[..., 0].transpose(1, 2) for w in inputs[0]], [v[..., 0] for v in inputs[1]])
"""

PEER_DWSNETS = _COMMON + _OFFICIAL_INPUTS + r"""
sys.path.insert(0, {src!r})
from nn.models import DWSModelForClassification
torch.manual_seed(0)
# experiments/mnist/trainer.py: its defaults (dim-hidden 32, n-hidden 4, reduction max, set-layer sab,
# n-fc-layers 1, n-out-fc 1, do-rate 0, add-bn True, diagonal False; num_heads keeps the model's 8)
net = DWSModelForClassification(weight_shapes=weight_shapes, bias_shapes=bias_shapes, input_features=1,
                                hidden_dim=32, n_hidden=4, reduction="max", n_fc_layers=1, set_layer="sab",
                                n_out_fc=1, dropout_rate=0.0, bn=True, diagonal=False)
run(net, inputs, back)
"""

PEER_NG = _COMMON + _OFFICIAL_INPUTS + r"""
import importlib.util, types
sys.path.insert(0, {src!r})
# rff's package __init__ imports torchvision (for a data loader neural-graphs does not use): load its
# functional and layers modules (GaussianEncoding) without it.
found = importlib.util.find_spec("rff")
rff = types.ModuleType("rff"); rff.__path__ = list(found.submodule_search_locations); sys.modules["rff"] = rff
import rff.functional, rff.layers
import hydra
from omegaconf import OmegaConf
configs = {src!r} + "/experiments/inr_classification/configs"
model = {name!r}
cfg = OmegaConf.create({{"model": OmegaConf.load(f"{{configs}}/model/{{model}}.yaml"),
                         "data": OmegaConf.load(f"{{configs}}/data/mnist.yaml")}})
# scripts/mnist_cls_pna.sh and mnist_cls_rt.sh (PNA's model.modulate_v is not a GNNForClassification argument)
overrides = ["model.graph_constructor.num_probe_features=0", "model.graph_constructor.use_pos_embed=True"]
overrides += {{"pna": ["model.gnn_backbone.dropout=0.2", "model.rev_edge_features=True"],
               "rtransformer": ["model.dropout=0.2", "model.modulate_v=True"]}}[model]
cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
torch.manual_seed(0)
net = hydra.utils.instantiate(cfg.model, layer_layout=[weight_shapes[0][0]] + [s[0] for s in bias_shapes])
run(net, inputs, back)
"""


@dataclass(frozen=True)
class Model:
    """One timed model: its label, the child template and where it runs."""

    label: str
    template: str
    python: str
    name: str = ""
    src: str = ""


@dataclass(frozen=True)
class Comparison:
    """A peer and our models compared with it at one setting and batch."""

    suite: str
    setting: str
    channels: int
    batch: int
    peer: Model | None
    ours: tuple[Model, ...]


def fingerprint(W: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """The children's fingerprint (``_COMMON``) of torch-layout weights and biases."""
    g = torch.Generator().manual_seed(1234)
    return float(sum((t.double() * torch.rand(t.shape, generator=g, dtype=torch.float64)).sum() for t in [*W, *b]))


def make_data(B: int, path: Path, seed: int = 0) -> float:
    """``B`` random SIREN-shaped weight sets and labels, saved for every side; their fingerprint."""
    gen = torch.Generator().manual_seed(seed)
    W = [torch.randn(B, o, i, generator=gen) / i ** 0.5 for i, o in zip(WIDTHS[:-1], WIDTHS[1:])]
    b = [0.1 * torch.randn(B, o, generator=gen) for o in WIDTHS[1:]]
    torch.save({"W": W, "b": b, "y": torch.randint(0, CLASSES, (B,), generator=gen)}, path)
    return fingerprint(W, b)


#: ``--malloc no-mmap``: glibc serves every allocation from its heap and keeps freed memory, instead of
#: mapping each block over its mmap threshold (at most 32 MiB) afresh and unmapping it when freed.
NO_MMAP = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2 ** 36)}


def run_child(model: Model, env: dict[str, str] | None = None, **fmt) -> dict:
    """What one fresh subprocess reports: seconds per step, steps timed, output shape, RSS growth, fingerprint."""
    code = model.template.format(widths=WIDTHS, classes=CLASSES, repo=str(REPO), name=model.name,
                                 src=model.src, **fmt)
    out = subprocess.run([model.python, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": str(fmt["threads"]), "PYTHONWARNINGS": "ignore",
                              **(env or {})})
    if out.returncode != 0:
        why = (f"killed by signal {-out.returncode}" + (" (out of memory?)" if out.returncode == -9 else "")
               if out.returncode < 0 else f"exit status {out.returncode}")
        raise RuntimeError(f"{model.label} failed ({why}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_env(python: str, imports: str, what: str) -> str | None:
    """``None`` if ``python`` exists and runs ``imports``, else why not."""
    if not Path(python).exists():
        return f"{what}: python {python} does not exist"
    out = subprocess.run([python, "-c", imports], capture_output=True, text=True)
    return None if out.returncode == 0 else f"{what}: {python} cannot run {imports!r}: {out.stderr.strip()[-500:]}"


def check_report(cmp: Comparison, label: str, rep: dict, want_fp: float) -> None:
    """Refuse a child that saw other networks or gave another output shape."""
    if rep["shape"] != [cmp.batch, CLASSES]:
        raise RuntimeError(f"{label} (batch {cmp.batch}): output shape {rep['shape']}, expected {[cmp.batch, CLASSES]}")
    if abs(rep["fingerprint"] - want_fp) > 1e-6 * max(1.0, abs(want_fp)):
        raise RuntimeError(f"{label} (batch {cmp.batch}): its inputs read back in torch layout have fingerprint "
                           f"{rep['fingerprint']!r}, the saved networks {want_fp!r}: its input conversion is wrong")


def comparisons(args, py: dict[str, str | None]) -> list[Comparison]:
    """The comparisons of the requested suites whose peer environment is usable."""
    ours = lambda label, name: Model(label, OURS, sys.executable, name=name)  # noqa: E731
    out = []
    if "nfn" in args.suites:
        peer = Model("nfn HNP", PEER_NFN, py["nfn"]) if py["nfn"] else None
        models = [ours("dwsnet dense", "dwsnet dense"), ours("dwsnet scatter", "dwsnet scatter")]
        if args.ng:
            models += [ours("ng-gnn (16 probes)", "ng-gnn probes"), ours("ng-t (16 probes)", "ng-t probes")]
        for C in args.channels:
            for B in args.nfn_batches:
                out.append(Comparison("nfn", f"{C} ch", C, B, peer, tuple(models)))
    if "dwsnets" in args.suites and py["official"]:
        peer = Model("DWSNets DWSModel (SAB, BN)", PEER_DWSNETS, py["official"], src=args.dwsnets_src)
        for B in args.dwsnets_batches:
            out.append(Comparison("dwsnets", "32 x 4, max", 32, B, peer, (ours("DWSNet (dense)", "dwsnet max"),)))
    if "ng" in args.suites and py["official"]:
        for B in args.ng_batches:
            out.append(Comparison("ng", "32 x 4, no probes", 32, B,
                                  Model("neural-graphs NG-GNN (PNA)", PEER_NG, py["official"], name="pna",
                                        src=args.ng_src), (ours("NG-GNN", "ng-gnn"),)))
            out.append(Comparison("ng", "64 x 4, 8 heads", 64, B,
                                  Model("neural-graphs NG-T (RT)", PEER_NG, py["official"], name="rtransformer",
                                        src=args.ng_src), (ours("NG-T", "ng-t"),)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suites", nargs="+", choices=["nfn", "dwsnets", "ng"], default=["nfn", "dwsnets", "ng"])
    p.add_argument("--nfn-python", "--peer-python", default=str(PEERS / "nfn_venv/bin/python"),
                   help="python of the virtual environment with nfn installed")
    p.add_argument("--official-python", default=str(PEERS / "official_venv/bin/python"),
                   help="python of the virtual environment for the official DWSNets / neural-graphs codes")
    p.add_argument("--dwsnets-src", default=str(PEERS / "dwsnets"), help="folder holding DWSNets' nn/")
    p.add_argument("--ng-src", default=str(PEERS / "neural_graphs"),
                   help="folder holding neural-graphs' nn/ and experiments/inr_classification/configs/")
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32], help="nfn suite: channels")
    p.add_argument("--nfn-batches", "--batches", type=int, nargs="+", default=[64, 256])
    p.add_argument("--dwsnets-batches", type=int, nargs="+", default=[64, 256])
    p.add_argument("--ng-batches", type=int, nargs="+", default=[64, 128])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--budget", type=float, default=30.0,
                   help="stop timing a child after the step that brings its timed seconds past this")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    p.add_argument("--malloc", choices=["default", "no-mmap"], default="default",
                   help="no-mmap: every child (ours and the peers alike) with glibc's mmap off and no heap trimming")
    p.add_argument("--optimizer-loop", choices=["foreach", "loop"], default="foreach",
                   help="AdamW's implementation on every side: foreach (one multi-tensor update, as our trainer "
                        "uses) or loop (torch's CPU default, one update per parameter tensor); the same bits")
    p.add_argument("--ng", action="store_true", help="nfn suite: also time NG-GNN and NG-T with probes")
    args = p.parse_args()

    py: dict[str, str | None] = {"nfn": args.nfn_python, "official": args.official_python}
    problems = {}
    if "nfn" in args.suites:
        problems["nfn"] = check_env(args.nfn_python, "import nfn.layers, torch", "nfn")
    if {"dwsnets", "ng"} & set(args.suites):
        problems["official"] = check_env(
            args.official_python, f"import sys; sys.path.insert(0, {args.dwsnets_src!r}); import nn.models",
            "official DWSNets") if "dwsnets" in args.suites else None
        if "ng" in args.suites and not problems["official"]:
            problems["official"] = check_env(
                args.official_python, "import torch_geometric, hydra, omegaconf, einops, importlib.util as u; "
                f"assert u.find_spec('rff'); import os; assert os.path.isdir({args.ng_src + '/nn'!r})",
                "official neural-graphs")
    for key, problem in problems.items():
        if problem:
            py[key] = None
            print(f"PEER ENVIRONMENT MISSING: {problem}\nSee the module docstring / docs/processor-speed.md "
                  f"for the setup. {'Timing our models only.' if key == 'nfn' else 'Skipping that suite.'}",
                  file=sys.stderr)

    todo = comparisons(args, py)
    print(f"SIREN {WIDTHS}, forward + cross-entropy + backward + AdamW, {args.threads} thread(s), "
          f"{args.clock} clock, median over {args.rounds} fresh processes of the best of {args.steps} steps "
          f"(at most {args.budget:g} s of timed steps each), malloc {args.malloc}, AdamW {args.optimizer_loop}")
    print("| suite | setting | batch | model | graphs/s | peak RSS growth MiB | ours / peer (range) |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        fps = {}
        for cmp in todo:
            data = Path(tmp) / f"siren_{cmp.batch}.pt"
            if cmp.batch not in fps:
                fps[cmp.batch] = make_data(cmp.batch, data)
            models = ([cmp.peer] if cmp.peer else []) + list(cmp.ours)
            reps: dict[str, list[dict]] = {m.label: [] for m in models}
            for r in range(args.rounds):
                order = models if r % 2 == 0 else models[::-1]
                for m in order:
                    rep = run_child(m, NO_MMAP if args.malloc == "no-mmap" else None,
                                    data=str(data), channels=cmp.channels, threads=args.threads,
                                    steps=args.steps, budget=args.budget, clock=args.clock,
                                    foreach=args.optimizer_loop == "foreach")
                    check_report(cmp, m.label, rep, fps[cmp.batch])
                    reps[m.label].append(rep)
            peer_s = [rep["seconds"] for rep in reps[cmp.peer.label]] if cmp.peer else None
            for m in models:
                secs = [rep["seconds"] for rep in reps[m.label]]
                rss = statistics.median(rep["rss_mib"] for rep in reps[m.label])
                ratio = "peer" if m is cmp.peer else "n/a"
                if peer_s and m is not cmp.peer:          # per round (neighbours in time), then the median
                    per_round = sorted(p / q for p, q in zip(peer_s, secs))
                    ratio = f"{statistics.median(per_round):.2f}x ({per_round[0]:.2f}-{per_round[-1]:.2f})"
                print(f"| {cmp.suite} | {cmp.setting} | {cmp.batch} | {m.label} | "
                      f"{cmp.batch / statistics.median(secs):,.1f} | {rss:,.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
