"""Export INR datasets in the layout the DWSNets / neural-graphs loaders read (the inverse of
:mod:`neuralgraph.importers`).

``export_inr_splits(data_dir, out_dir)`` writes::

    out_dir/splits.json                       their splits JSON (see below)
    out_dir/statistics.pth                    {"weights": {"mean": [...], "std": [...]}, "biases": {...}}
    out_dir/inrs/<split>_<label>_<i>/checkpoints/model_final.pth     classification INRs
    out_dir/inrs/<split>/model_<i>.pth                               sine INRs (ssl)

* every ``.pth`` is the ``state_dict`` of DWSNets' ``nn.inr.INR``: keys ``seq.0.weight``,
  ``seq.0.bias``, ..., torch ``[out, in]`` float32 tensors; a sine INR's also holds ``coef``
  (its targets, ``meta["targets"]``, as a list), as DWSNets' ``experiments/ssl`` files do
  (their ``x`` / ``y`` arrays are not written: their loader does not read them, and numpy
  arrays make a file unreadable by ``torch.load``'s default since torch 2.6);
* ``splits.json``: ``{"train": {"path": [...], "label": ["5", ...]}, "val": ..., "test": ...}``
  with labels as strings, as their MNIST split scripts write them (their loaders apply
  ``int()``), or ``{"train": [paths], ...}`` for sine INRs; paths absolute (DWSNets' loader
  opens them as they are, neural-graphs' joins them to its dataset directory, which keeps an
  absolute path) or, with ``relative_paths=True``, relative to ``out_dir`` (neural-graphs'
  convention, with ``dataset_dir = out_dir``);
* ``statistics.pth``: the element-wise mean and standard deviation of the exported training
  INRs in their ``[in, out, 1]`` / ``[out, 1]`` layout, as their ``compute_statistics`` scripts
  compute it (over the whole training split).

Their INR class fixes ``sin(30 x)`` between layers, ``+ 0.5`` on the output and, for images,
``(x = col, y = row)`` coordinates. INRs stored otherwise are converted so that their code
computes the same function (each conversion is listed in the returned ``conversions``):
another ``w0`` is folded into the layers before each sine (``W, b`` times ``w0 / 30``), another
output offset into the last bias, and ``(row, col)`` image INRs get their first-layer columns
swapped (exact). Anything their INR cannot express (other activations, convolutions, missing
biases) is refused.

The export is atomic: everything is written into a hidden directory beside ``out_dir`` and
renamed into place at the end, so an interrupted export leaves no partial dataset. An existing
non-empty ``out_dir`` is refused unless ``overwrite=True``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from .architecture import Architecture
from .inr.coords import convert_coordinates
from .inr.dataset import INRDataset

__all__ = ["export_inr_splits", "DWSNETS_W0", "DWSNETS_OFFSET", "to_dwsnets_inr"]

#: DWSNets' INR: ``Siren(w0=30)`` layers and ``+ 0.5`` on the output.
DWSNETS_W0 = 30.0
DWSNETS_OFFSET = 0.5
_SPLITS = ("train", "val", "test")


def _siren_parts(arch: Architecture, where: str) -> tuple[float, float]:
    """``(w0, offset)`` of an MLP of sines (the only networks DWSNets' INR class expresses), else ``ValueError``."""
    w0s, offset = set(), 0.0
    M = arch.num_layers
    for m, layer in enumerate(arch.layers):
        kinds = [p.kind for p in layer.post]
        want = ["sine"] if m < M - 1 else []
        last_offset = m == M - 1 and kinds[-1:] == ["offset"]
        if layer.kind != "linear" or not layer.bias or (kinds[:-1] if last_offset else kinds) != want:
            raise ValueError(f"{where}: layer {m + 1} is a {layer.kind} with {kinds or 'nothing'} after it"
                             f"{'' if layer.bias else ' and no bias'}; DWSNets' INR is Linear layers with biases, "
                             f"sin(w0 x) between them and an offset on the output")
        if want:
            w0s.add(float(layer.post[0].args[0]) if layer.post[0].args else 30.0)
        if last_offset:
            offset = float(layer.post[-1].args[0]) if layer.post[-1].args else 0.5
    if len(w0s) > 1:
        raise ValueError(f"{where}: the sines have different w0 {sorted(w0s)}; DWSNets' INR has one")
    if any(p.kind != "reorder" for p in arch.pre):
        raise ValueError(f"{where}: modules before the first layer ({[p.kind for p in arch.pre]}) have no place in "
                         f"DWSNets' INR")
    return (w0s.pop() if w0s else DWSNETS_W0), offset


def to_dwsnets_inr(weights: list[Tensor], biases: list[Tensor], arch: Architecture, where: str = "the INRs"
                   ) -> tuple[list[Tensor], list[Tensor], list[str]]:
    """Stacked INRs ``[n, out, in]`` / ``[n, out]`` as DWSNets' ``INR`` computes them: ``(weights, biases,
    conversions)`` (see the module docstring; ``conversions`` says what changed, empty when nothing did)."""
    w0, offset = _siren_parts(arch, where)
    W, b, notes = [w.float() for w in weights], [x.float() for x in biases], []
    if arch.widths[0] == 2:
        order = arch.input_order
        W, b, _ = convert_coordinates(W, b, arch, "xy")
        if order == (0, 1):
            notes.append("(row, col) image coordinates -> DWSNets' (x = col, y = row): first-layer columns swapped")
    if w0 != DWSNETS_W0:
        scale = w0 / DWSNETS_W0
        for m in range(arch.num_layers - 1):
            W[m], b[m] = W[m] * scale, b[m] * scale
        notes.append(f"w0 {w0:g} -> {DWSNETS_W0:g}: weights and biases before each sine times {scale:g}")
    if offset != DWSNETS_OFFSET:
        b[-1] = b[-1] + (offset - DWSNETS_OFFSET)
        notes.append(f"output offset {offset:g} -> {DWSNETS_OFFSET:g}: last bias {offset - DWSNETS_OFFSET:+g}")
    return W, b, notes


def _statistics(W: list[Tensor], b: list[Tensor]) -> dict:
    """Their statistics of the training INRs: element-wise mean / std in the ``[in, out, 1]`` layout."""
    w = [x.transpose(1, 2).unsqueeze(-1) for x in W]
    c = [x.unsqueeze(-1) for x in b]
    return {"weights": {"mean": [x.mean(0) for x in w], "std": [x.std(0) for x in w]},
            "biases": {"mean": [x.mean(0) for x in c], "std": [x.std(0) for x in c]}}


def _state_dict(W: list[Tensor], b: list[Tensor], i: int) -> dict[str, Tensor]:
    out = {}
    for m, (w, x) in enumerate(zip(W, b)):
        out[f"seq.{m}.weight"] = w[i].clone()                # clone: save this INR's bytes, not the whole stack
        out[f"seq.{m}.bias"] = x[i].clone()
    return out


def export_inr_splits(data: str | os.PathLike, out_dir: str | os.PathLike, *, layout: str = "dwsnets",
                      relative_paths: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Write the INR splits of ``data`` in the DWSNets / neural-graphs layout (see the module docstring).

    Args:
        data: a directory of split files (``neuralgraph fit-inrs`` / ``import-inrs``).
        out_dir: the directory to create.
        layout: ``"dwsnets"`` (read by DWSNets' and neural-graphs' ``INRDataset``).
        relative_paths: write the JSON's paths relative to ``out_dir`` instead of absolute.
        overwrite: replace an existing non-empty ``out_dir``.
        progress: a progress bar over the INRs.

    Returns ``{"splits": path, "statistics": path, "counts": {split: n}, "conversions": [...]}``.
    """
    from tqdm.auto import tqdm

    from .inr.splits import load_splits

    if layout != "dwsnets":
        raise ValueError(f"unknown layout {layout!r}; export writes 'dwsnets' (the layout of DWSNets' and "
                         f"neural-graphs' INR datasets)")
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True (`neuralgraph export-inrs "
                              f"--overwrite`) to replace it, or choose another --out")
    splits: dict[str, INRDataset] = load_splits(data, normalize=False)
    train = splits["train"]
    sines = isinstance(train.meta.get("targets"), Tensor) and train.num_classes == 1
    converted, notes = {}, []
    for s, ds in splits.items():
        W, b, notes = to_dwsnets_inr(*ds.params(slice(None)), ds.arch, str(ds.path))
        converted[s] = (W, b)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        table: dict = {}
        for s, ds in splits.items():
            W, b = converted[s]
            entry = []
            labels = ds.labels.tolist()
            targets = ds.meta["targets"].tolist() if sines else None
            for i in tqdm(range(len(ds)), desc=f"export {s}", unit="INR", disable=not progress):
                rel = Path("inrs") / (Path(s) / f"model_{i}.pth" if sines
                                      else Path(f"{s}_{labels[i]}_{i}") / "checkpoints" / "model_final.pth")
                sd = _state_dict(W, b, i)
                if sines:
                    sd["coef"] = [float(c) for c in targets[i]]
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                torch.save(sd, staging / rel)
                entry.append(rel.as_posix() if relative_paths else (out_dir / rel).as_posix())
            table[s] = entry if sines else {"path": entry, "label": [str(int(y)) for y in labels]}
        (staging / "splits.json").write_text(json.dumps(table))
        torch.save(_statistics(*converted["train"]), staging / "statistics.pth")
        if out_dir.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, trash / out_dir.name)
            os.replace(staging, out_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"splits": out_dir / "splits.json", "statistics": out_dir / "statistics.pth",
            "counts": {s: len(ds) for s, ds in splits.items()}, "conversions": notes}
