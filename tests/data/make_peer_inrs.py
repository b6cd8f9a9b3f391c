"""Write tests/data/peer_inrs/: INR datasets exactly as the DWSNets and neural-graphs code writes them.

    git -C /work/.mirror/AvivNavon+DWSNets/repo archive HEAD | tar -x -C /tmp/peers/dwsnets
    mkdir -p /tmp/peers/ng && for f in experiments/__init__.py experiments/utils.py \\
        experiments/inr_classification/dataset/generate_mnist_data_splits.py; do
      mkdir -p /tmp/peers/ng/$(dirname $f)
      git -C /work/.mirror/mkofinas+neural-graphs/repo show HEAD:$f > /tmp/peers/ng/$f; done
    .venv/bin/python tests/data/make_peer_inrs.py /tmp/peers/dwsnets /tmp/peers/ng \\
        /work/shared/datasets/mnist tests/data/peer_inrs

(made from DWSNets 2001d52f3b78ad99268f45254f75d00e1d3083bb and neural-graphs
1f2b671ab4988ef212469363005a5b99eec16580, torch 2.13.0, numpy 2.4.6, scikit-learn 1.9.1). The peers'
own modules are imported from those checkouts and called; nothing of theirs is copied here.
Their ``nn/inr.py`` imports the ``rff`` package, whose ``__init__`` imports torchvision (not
installed here): the real ``rff`` sources of ``~/peers/official_venv`` are loaded without that
``__init__`` (``--rff``); the INRs never use them (``pe_features=None``).

``peer_inrs/mnist/`` (the MNIST-INR classification layout of both repositories):

* ``mnist-inrs/mnist_png_{training,testing}_{label}_{index}/checkpoints/model_final.pth``: one
  ``state_dict`` of DWSNets' ``nn.inr.INR(in_dim=2, n_layers=3, up_scale=16)`` (the INR that
  ``INRImageDataset`` renders: keys ``seq.0.weight`` ... ``seq.2.bias``) per MNIST image (training
  images 0-9, test images 0-3), fitted here to the image on DWSNets' own coordinate grid
  (``experiments.utils.make_coordinates``: the first input is x = the column, the second y =
  the row) by full-batch Adam. How the authors fitted theirs is not in their repositories; the
  files' format and coordinate convention are.
* ``mnist_splits.json``: written by neural-graphs' ``generate_mnist_data_splits.generate_splits``
  (``val_size=2, random_state=0``): paths relative to the dataset directory, labels as strings
  (``p.parent.parent.stem.split("_")[-2]``). DWSNets' script writes the same table with absolute
  paths.
* ``statistics.pth``: DWSNets' ``experiments/mnist/compute_statistics.compute_stats`` on that
  JSON (element-wise mean / std over the training split, in their ``[in, out, 1]`` layout).
* ``renders.pt``: ``{split: [n, 1, 28, 28]}``, the images DWSNets' ``INRImageDataset`` renders
  from these files (its ``make_coordinates`` grid), in the JSON's order.

``peer_inrs/sines/`` (DWSNets' self-supervised sine-wave experiment, ``experiments/ssl``):

* ``ssl-inrs/model_{seed}.pth``: what ``experiments/ssl/inr_trainer.py`` saves (its ``main`` is
  followed step by step, since the module imports wandb at load time): ``INR(in_dim=1,
  n_layers=3, up_scale=32)`` fitted by Adam (lr 1e-3, weight decay 1e-4, batch 2000) to
  ``SineDataset(coef, n_samples=100)`` (their ``--n-samples`` flag; 1000 by default) for at most
  500 epochs (``--n-epochs 500``) with early stopping at an MSE of 1e-4, ``coef =
  np.random.uniform(0, 10, 2)`` after ``set_seed(seed)``; the state dict also holds ``coef``
  (a list), ``x`` and ``y`` (numpy arrays), as theirs do.
* ``ssl_splits.json``: written by running their ``experiments/ssl/generate_data_splits.py
  --data-path ssl-inrs --save-path . --val-size 2`` (lists of paths, no labels).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

RFF = Path.home() / "peers/official_venv/lib/python3.11/site-packages/rff"


def load_rff(path: Path) -> None:
    """The ``rff`` package's modules without its ``__init__`` (which imports torchvision)."""
    pkg = types.ModuleType("rff")
    pkg.__path__ = [str(path)]
    sys.modules["rff"] = pkg
    import rff.functional  # noqa: F401
    import rff.layers  # noqa: F401


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fit_mnist(out: Path, mnist: Path, INR, make_coordinates) -> None:
    from neuralgraph.data.idx import load_mnist

    coords = make_coordinates((28, 28), 1)[0]              # their grid: (x = column, y = row)
    for split, name, count in (("train", "training", 10), ("test", "testing", 4)):
        images, labels = load_mnist(mnist, split, limit=count)
        for i in range(count):
            torch.manual_seed(1000 * (split == "test") + i)
            model = INR(in_dim=2, n_layers=3, up_scale=16)
            target = images[i].reshape(-1, 1)              # INRImageDataset: image.view(28, 28, -1)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            for _ in range(2000):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(coords), target)
                loss.backward()
                opt.step()
            path = out / "mnist-inrs" / f"mnist_png_{name}_{int(labels[i])}_{i}" / "checkpoints" / "model_final.pth"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)
            print(f"{path.relative_to(out)}: PSNR {10 * np.log10(1 / loss.item()):.1f} dB")


def fit_sines(out: Path, dwsnets: Path, INR, set_seed) -> None:
    sine_data = load_module("sine_data", dwsnets / "experiments/ssl/data/sine_data.py")
    for seed in range(8):
        set_seed(seed)
        model = INR(in_dim=1, n_layers=3, up_scale=32, out_channels=1, pe_features=None)
        coef = np.random.uniform(0.0, 10.0, 2)
        data = sine_data.SineDataset(coef=coef, n_samples=100)
        loader = torch.utils.data.DataLoader(data, batch_size=2000)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        for epoch in range(500):
            for batch in loader:
                model.train()
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(batch.x), batch.y)
                loss.backward()
                opt.step()
            if loss.item() <= 1e-4:
                break
        sd = model.state_dict()
        sd["coef"] = coef.tolist()
        sd["x"] = data.x
        sd["y"] = data.y
        (out / "ssl-inrs").mkdir(parents=True, exist_ok=True)
        torch.save(sd, out / "ssl-inrs" / f"model_{seed}.pth")
        print(f"ssl-inrs/model_{seed}.pth: coef {coef.round(3).tolist()}, final MSE {loss.item():.4f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dwsnets", type=Path)
    p.add_argument("neural_graphs", type=Path)
    p.add_argument("mnist", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--rff", type=Path, default=RFF)
    args = p.parse_args()
    torch.set_num_threads(1)                               # tiny networks: one thread is the fastest
    dwsnets, ng_repo, out = args.dwsnets.resolve(), args.neural_graphs.resolve(), args.out.resolve()
    load_rff(args.rff)
    sys.path.insert(0, str(dwsnets))
    from experiments.data import INRImageDataset
    from experiments.mnist.compute_statistics import compute_stats
    from experiments.utils import make_coordinates, set_seed
    from nn.inr import INR

    assert INR.__module__ == "nn.inr" and sys.modules["nn.inr"].__file__.startswith(str(dwsnets))
    shutil.rmtree(out, ignore_errors=True)
    # MNIST INRs, written into neural-graphs' dataset directory (its split script takes paths below it)
    work = ng_repo / "experiments/inr_classification/dataset"
    shutil.rmtree(work / "mnist-inrs", ignore_errors=True)
    fit_mnist(work, args.mnist, INR, make_coordinates)
    splits = load_module("generate_mnist_data_splits", work / "generate_mnist_data_splits.py")
    splits.generate_splits("mnist-inrs", ".", name="mnist_splits.json", val_size=2, random_state=0)
    (out / "mnist").mkdir(parents=True)
    shutil.move(str(work / "mnist-inrs"), out / "mnist" / "mnist-inrs")
    shutil.move(str(work / "mnist_splits.json"), out / "mnist" / "mnist_splits.json")
    os.chdir(out / "mnist")                                # the JSON's paths are relative to it
    compute_stats("mnist_splits.json", ".", batch_size=10000)
    table = json.loads(Path("mnist_splits.json").read_text())
    renders = {}
    for split in table:
        ds = INRImageDataset("mnist_splits.json", split=split)
        renders[split] = torch.stack([ds[i].image for i in range(len(ds))])
    torch.save(renders, "renders.pt")
    # sine-wave INRs and their split script
    (out / "sines").mkdir()
    fit_sines(out / "sines", dwsnets, INR, set_seed)
    env = {**os.environ, "PYTHONPATH": str(dwsnets)}
    subprocess.run([sys.executable, str(dwsnets / "experiments/ssl/generate_data_splits.py"), "--data-path",
                    "ssl-inrs", "--save-path", ".", "--val-size", "2"], cwd=out / "sines", env=env, check=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
