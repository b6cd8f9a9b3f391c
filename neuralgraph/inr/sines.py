"""Sine-wave INRs: the data of the DWSNets self-supervised experiment.

Each INR is a 1-D SIREN ``1 -> 32 -> 32 -> 1`` (``w0 = 30``) fitted to
``g(x) = a sin(b x)`` on the 2,000 points ``x_k = -pi + k pi / 1000`` of
``[-pi, pi)``, with ``a, b ~ U[0, 10]`` drawn independently per INR. The
coefficients ``(a, b)`` are stored as ``meta["targets"]`` (float32 ``[n, 2]``,
``meta["target_names"] = ["a", "b"]``): the ``ssl`` task never trains on them,
its linear probe regresses them from frozen embeddings.

Protocol, as in the DWSNets repository (``experiments/ssl``: ``sine_data.py``
for the grid and ``g``, ``inr_trainer.py`` for the fit), and where this module
deviates:

* Fit: Adam, learning rate 1e-3, full batch (all 2,000 points), one SIREN per
  signal. DWSNets runs up to 1,500 steps with early stopping at an MSE of 1e-4
  and a weight decay of 1e-4; here ``steps`` is fixed (default 300, a CPU
  budget) and there is no weight decay (the batched fitter has none; with
  ``target_psnr`` it stops each INR early, as DWSNets does).
* Target scaling: DWSNets fits the raw ``g`` (amplitudes up to 10) and adds a
  constant 0.5 to the network output. Here the network is fitted to
  ``g / scale`` (``scale = 10``: the signals lie in ``[-1, 1]``, where the SIREN
  initialisation and Adam's step size are tuned), then its output layer
  (weight and bias) is multiplied by ``scale``. That is exact: the stored
  network computes ``g`` itself (``meta["fit_mse"]`` is its MSE against the raw
  ``g``), with ~8x lower raw MSE than a raw fit of the same step count (measured:
  median 2e-5 against 1.5e-4 after 500 steps, 64 INRs). There is no 0.5 offset:
  the output bias absorbs any constant, and a per-layer standardisation of the
  parameters removes it again.
* Split sizes: the DWSNets repository downloads its INRs and draws train / val /
  test with ``train_test_split`` (sizes not recorded there); here each split
  draws its own ``(a, b)`` from ``(seed, split)``, so a test split is the same
  whatever ``n_train``.

``psnr`` in the split files is ``10 log10(range^2 / mse)`` with ``range = 2 *
scale`` (the signals' span ``[-10, 10]``) and the raw MSE.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from ..chunks import fingerprint as _fingerprint
from ..io import LOCK_NAME, MANIFEST, atomic_write_text, lock_directory, tensor_sha256
from ..seeding import derive_seed
from .files import load_inr_file, save_inr_dataset
from .psnr import psnr_from_mse
from .settings import check_fit_settings
from .siren import siren_architecture

__all__ = ["SINE_WIDTHS", "SINE_POINTS", "sine_grid", "sine_signals", "sample_coefficients", "fit_sines",
           "build_sine_splits", "SPLIT_SEEDS"]

#: The DWSNets sine INR: 1 input, two hidden layers of 32, 1 output.
SINE_WIDTHS: tuple[int, ...] = (1, 32, 32, 1)
#: Points of ``[-pi, pi)`` each signal is sampled at.
SINE_POINTS = 2000
#: ``split -> key`` mixed into the seed of its coefficients and of its fit.
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
_KIND = "sines"


def sine_grid(points: int = SINE_POINTS, dtype: torch.dtype = torch.float32) -> Tensor:
    """``[points]`` equispaced coordinates ``-pi + 2 pi k / points`` of ``[-pi, pi)`` (DWSNets: ``points = 2000``)."""
    _check_int("points", points, 2)
    return (torch.arange(points, dtype=torch.float64) * (2 * math.pi / points) - math.pi).to(dtype)


def sine_signals(coefficients: Tensor, x: Tensor) -> Tensor:
    """``g_i(x) = a_i sin(b_i x)`` for ``coefficients[i] = (a_i, b_i)``.

    Shapes:
        coefficients ``[n, 2]``, x ``[P]`` -> ``[n, P]``
    """
    if coefficients.dim() != 2 or coefficients.shape[1] != 2:
        raise ValueError(f"sine_signals: coefficients must be [n, 2] (a, b), got {tuple(coefficients.shape)}")
    a, b = coefficients[:, :1], coefficients[:, 1:]
    return a * torch.sin(b * x)


def sample_coefficients(n: int, seed: int, a_range: Sequence[float] = (0.0, 10.0),
                        b_range: Sequence[float] = (0.0, 10.0)) -> Tensor:
    """``[n, 2]`` float32 ``(a, b)``, ``a ~ U[a_range]``, ``b ~ U[b_range]``, deterministic from ``seed``."""
    _check_int("n", n, 1)
    g = torch.Generator().manual_seed(int(seed))
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    lo = torch.tensor([a_range[0], b_range[0]], dtype=torch.float64)
    hi = torch.tensor([a_range[1], b_range[1]], dtype=torch.float64)
    return (lo + u * (hi - lo)).float()


def fit_sines(coefficients: Tensor, *, steps: int = 300, lr: float = 1e-3, w0: float = 30.0,
              points: int = SINE_POINTS, scale: float = 10.0, seed: int = 0, device: str | torch.device = "cpu",
              target_psnr: float | None = None, progress: bool = True, chunk: int = 256
              ) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """Fit one SIREN ``1 -> 32 -> 32 -> 1`` per ``a sin(b x)`` (batched; see the module docstring).

    Returns stacked weights ``[n, out, in]``, biases ``[n, out]`` of networks that compute
    ``g`` itself (output layer rescaled by ``scale``) and their MSE against ``g`` ``[n]``.

    Shapes:
        coefficients ``[n, 2]`` -> (weights, biases, mse ``[n]``)
    """
    from .fit import fit_sirens_to_signals
    from .siren import siren_forward

    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"fit_sines: scale must be a finite number > 0, got {scale!r}")
    x = sine_grid(points)
    targets = sine_signals(coefficients.float(), x)
    res = fit_sirens_to_signals(x[:, None], targets / scale, widths=SINE_WIDTHS, w0=w0, steps=steps, lr=lr,
                                seed=seed, offset=0.0, progress=progress, device=device, target_psnr=target_psnr)
    weights = [w.cpu().clone() for w in res.weights]
    biases = [b.cpu().clone() for b in res.biases]
    weights[-1].mul_(scale)
    biases[-1].mul_(scale)
    mse = torch.cat([(siren_forward([w[s:s + chunk] for w in weights], [b[s:s + chunk] for b in biases],
                                    x[:, None], w0)[..., 0] - targets[s:s + chunk]).pow(2).mean(1)
                     for s in range(0, len(targets), chunk)])
    return weights, biases, mse


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"sines: {name} must be an integer >= {minimum}, got {value!r}")


def _check_range(name: str, r: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise ValueError(f"sines: {name} must be two numbers (low, high), got {r!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"sines: {name} must be finite with low < high, got {r!r}")
    return lo, hi



def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _claim_directory(out_dir: Path, manifest: dict, paths, overwrite: bool) -> None:
    """Make ``out_dir`` this fit's (its manifest written first): refuse files of another fit unless
    ``overwrite``, which deletes the split files ``paths`` first. Called with the directory locked."""
    existing = _read_manifest(out_dir / MANIFEST)
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in (LOCK_NAME, MANIFEST))
    if existing != manifest and others:
        if not overwrite:
            what = ("sine INRs fitted with other settings: " + "; ".join(
                f"{k} {existing['settings'].get(k)!r} there, {v!r} now"
                for k, v in manifest["settings"].items() if existing["settings"].get(k) != v)
                if existing and isinstance(existing.get("settings"), dict) and existing.get("kind") == _KIND
                else f"files of another kind ({', '.join(others[:5])})")
            raise ValueError(f"{out_dir} holds {what}; refusing to mix them with this fit. Pass "
                             f"overwrite=True to replace them, or choose another directory")
        for p in paths:
            p.unlink(missing_ok=True)
    if existing != manifest:
        atomic_write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", out_dir / MANIFEST)


def build_sine_splits(out_dir: str | os.PathLike, n_train: int = 1000, n_val: int = 200, n_test: int = 500,
                      steps: int = 300, seed: int = 0, *, lr: float = 1e-3, w0: float = 30.0,
                      points: int = SINE_POINTS, scale: float = 10.0, a_range: Sequence[float] = (0.0, 10.0),
                      b_range: Sequence[float] = (0.0, 10.0), target_psnr: float | None = None,
                      device: str | torch.device = "cpu", overwrite: bool = False, progress: bool = True
                      ) -> dict[str, Path]:
    """Fit sine-wave INRs and write ``train.pt`` / ``val.pt`` / ``test.pt`` to ``out_dir``.

    Each split is an INR dataset file (:func:`neuralgraph.inr.save_inr_dataset`; labels all 0,
    ``num_classes = 1``) whose ``meta`` holds ``targets`` (float32 ``[n, 2]``: ``a, b``),
    ``target_names`` (``["a", "b"]``), ``targets_sha256``, ``fit_mse`` (``[n]``, against the
    raw ``g``), ``fit`` (the settings), ``dataset`` (seed and sizes), ``source = "sines"`` and a
    ``fingerprint``. Everything is deterministic from ``seed`` on one device and thread count.

    **One fit per directory.** ``out_dir/manifest.json`` records the settings and is written
    before anything is fitted; the directory is locked (:func:`neuralgraph.io.lock_directory`)
    while writing. A directory holding files of another fit (another manifest, or none) is
    refused, unless ``overwrite=True``, which deletes its split files first. A rerun with the
    same settings reuses finished splits (each file is written atomically), so an interrupted
    build resumes.

    Args:
        out_dir: the dataset directory.
        n_train, n_val, n_test: INRs per split.
        steps: Adam steps per INR (the maximum with ``target_psnr``).
        seed: seeds the coefficients and the fit of each split (mixed with the split's name).
        lr, w0, points, scale: fit settings (see the module docstring).
        a_range, b_range: the uniform ranges of ``a`` and ``b``.
        target_psnr: per-INR early stopping of the fitter (PSNR of ``g / scale``, data range 1).
        device: where to fit (not part of the settings: the files are the same kind of data).
        overwrite: replace a directory fitted with other settings.
        progress: progress bars.
    """
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("steps", steps)):
        _check_int(name, value, 1)
    _check_int("points", points, 2)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"sines: seed must be an integer, got {seed!r}")
    check_fit_settings(steps=steps, lr=lr, w0=w0, min_steps=1)
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"sines: scale must be a finite number > 0, got {scale!r}")
    a_range, b_range = _check_range("a_range", a_range), _check_range("b_range", b_range)
    out_dir = Path(out_dir)
    fit = {"widths": list(SINE_WIDTHS), "w0": float(w0), "steps": int(steps), "lr": float(lr),
           "points": int(points), "domain": [-math.pi, math.pi], "scale": float(scale), "offset": 0.0,
           "a_range": list(a_range), "b_range": list(b_range), "function": "a*sin(b*x)"}
    if target_psnr is not None:
        fit["target_psnr"] = float(target_psnr)
    dataset = {"seed": int(seed), "n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test)}
    manifest = {"kind": _KIND, "settings": {**fit, **dataset}}
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    arch = siren_architecture(SINE_WIDTHS, w0)
    paths = {s: out_dir / f"{s}.pt" for s in sizes}

    with lock_directory(out_dir, what="sine INR dataset directory"):
        _claim_directory(out_dir, manifest, paths.values(), overwrite)
        for split, n in sizes.items():
            fingerprint = _fingerprint({**manifest, "split": split})
            if paths[split].is_file():
                try:
                    if load_inr_file(paths[split]).get("meta", {}).get("fingerprint") == fingerprint:
                        continue                       # finished by an earlier run with these settings
                except ValueError:
                    pass                               # corrupt: refit
            coef = sample_coefficients(n, derive_seed(seed, SPLIT_SEEDS[split], 0), a_range, b_range)
            fit_seed = derive_seed(seed, SPLIT_SEEDS[split], 1)
            weights, biases, mse = fit_sines(coef, steps=steps, lr=lr, w0=w0, points=points, scale=scale,
                                             seed=fit_seed, device=device, target_psnr=target_psnr,
                                             progress=progress)
            psnr = psnr_from_mse(mse.double().clamp_min(1e-30), 2 * scale).float()
            meta = {"source": _KIND, "fit": {**fit, "seed": fit_seed}, "dataset": dataset,
                    "fingerprint": fingerprint, "targets": coef, "target_names": ["a", "b"],
                    "targets_sha256": tensor_sha256(coef), "fit_mse": mse.float()}
            save_inr_dataset(paths[split], weights, biases, torch.zeros(n, dtype=torch.long), arch,
                             num_classes=1, psnr=psnr, meta=meta)
    return paths
