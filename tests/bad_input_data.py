"""Bad-input cases: data (run by test_bad_input.py; see bad_input.py for the row format).

INR dataset files and indexing, SIREN fitting, split building and the IDX readers.
"""
from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

from bad_input import Case, Ctx, cli_case


def _train(ctx: Ctx):
    from neuralgraph.inr import INRDataset

    return INRDataset(ctx.data / "train.pt")


def _dataset(path: Path):
    from neuralgraph.inr import INRDataset

    return INRDataset(path)


def _inrs(n: int = 4):
    """``n`` untrained default SIRENs (weights, biases, arch) for save_inr_dataset cases."""
    from neuralgraph.inr import siren_architecture, siren_init

    w, b = siren_init(n, generator=torch.Generator().manual_seed(0))
    return w, b, siren_architecture()


def _save(ctx: Ctx, labels, num_classes=10, nan=False):
    from neuralgraph.inr import save_inr_dataset

    w, b, arch = _inrs(len(labels))
    if nan:
        w[1][0, 0, 0] = float("nan")
    return save_inr_dataset(ctx.tmp / "x.pt", w, b, torch.as_tensor(labels), arch, num_classes=num_classes)


def _rewritten(ctx: Ctx, name: str = "train.pt", **changes) -> Path:
    """A copy of a split of the shared data with ``changes`` applied and *valid* checksums."""
    from neuralgraph.inr.files import _checksums

    obj = torch.load(ctx.data / name, weights_only=True)
    for key, change in changes.items():
        obj[key] = change(obj[key])
    obj["checksums"] = _checksums(obj)
    torch.save(obj, ctx.tmp / name)
    return ctx.tmp / name


def _label_57(labels):
    labels = labels.clone()
    labels[0] = 57
    return labels


def _corrupted(ctx: Ctx) -> Path:
    path = ctx.tmp / "corrupt.pt"
    shutil.copyfile(ctx.data / "train.pt", path)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\x5a" * 8)
    return path


def _mixed_splits(ctx: Ctx) -> Path:
    """The shared data with val.pt replaced by one fitted with other steps."""
    from neuralgraph.inr import build_inr_splits

    data = ctx.copy_data()
    build_inr_splits("digits", ctx.tmp / "other", n_train=20, n_val=20, n_test=20, steps=2, progress=False)
    os.replace(ctx.tmp / "other" / "val.pt", data / "val.pt")
    return data


def _other_num_classes(ctx: Ctx) -> Path:
    """The shared data with val.pt rewritten as an 11-class split."""
    data = ctx.copy_data()
    shutil.copyfile(_rewritten(ctx, "val.pt", meta=lambda m: {**m, "num_classes": 11}), data / "val.pt")
    return data


def _other_activation(ctx: Ctx) -> Path:
    """The shared data with val.pt rewritten as INRs whose hidden layers end in ReLU instead of sine."""
    def relu(arch):
        return {**arch, "layers": [{**l, "post": [["relu", []] if m[0] == "sine" else m for m in l["post"]]}
                                   for l in arch["layers"]]}
    data = ctx.copy_data()
    shutil.copyfile(_rewritten(ctx, "val.pt", arch=relu), data / "val.pt")
    return data


def _files_without_manifest(ctx: Ctx) -> None:
    data = ctx.copy_data()
    (data / "manifest.json").unlink()


def _write_idx(path: Path, arr: np.ndarray, code: int) -> None:
    be = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    path.write_bytes(struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
                     + arr.astype(be).tobytes())


def _mnist_dir(ctx: Ctx, images: np.ndarray, labels: np.ndarray, image_code=0x08, label_code=0x08) -> Path:
    for split in ("train", "t10k"):
        _write_idx(ctx.tmp / f"{split}-images-idx3-ubyte", images, image_code)
        _write_idx(ctx.tmp / f"{split}-labels-idx1-ubyte", labels, label_code)
    return ctx.tmp


def _load_mnist(root: Path):
    from neuralgraph.data import load_mnist

    return load_mnist(root, "train")


def _fit(images, **kw):
    from neuralgraph.inr import fit_sirens

    return fit_sirens(images, progress=False, **kw)


def _fit_to_dataset(ctx: Ctx, n: int = 4, labels=None, **kw):
    from neuralgraph.data import load_digits
    from neuralgraph.inr import fit_to_dataset

    x, y = load_digits()
    kw = {"num_classes": 10, "steps": 2, "progress": False, **kw}
    return fit_to_dataset(x[:n], y[:n] if labels is None else torch.as_tensor(labels), ctx.tmp / "train.pt", **kw)


def _build(ctx: Ctx, out: Path | None = None, **kw):
    from neuralgraph.inr import build_inr_splits

    kw = {"n_train": 20, "n_val": 20, "n_test": 20, "steps": 2, "progress": False, **kw}
    return build_inr_splits("digits", out or ctx.tmp / "inrs", **kw)


def _load_splits(path: Path):
    from neuralgraph.train import load_splits

    return load_splits(path)


DIGITS = torch.rand(3, 8, 8)
FIT_INRS = ["fit-inrs", "--out", "{tmp}/inrs", "--n-train", "20", "--n-val", "20", "--n-test", "20",
            "--steps", "2", "--quiet"]
SHARED_FIT = ["fit-inrs", "--n-train", "60", "--n-val", "20", "--n-test", "20", "--quiet"]   # as {data} was made

CASES: list[Case] = [
    # --- selecting INRs: batch / params / [] / loader
    Case("batch: float indices", lambda ctx: _train(ctx).batch(torch.tensor([0.0, 1.0])), ValueError, "float32"),
    Case("params: float list", lambda ctx: _train(ctx).params([0.5, 1.0]), ValueError, "float64"),
    Case("batch: 2-D indices", lambda ctx: _train(ctx).batch(torch.zeros(2, 2, dtype=torch.long)), ValueError,
         "1-D"),
    Case("batch: boolean mask of the wrong length", lambda ctx: _train(ctx).batch(torch.ones(5, dtype=torch.bool)),
         ValueError, "boolean mask must have shape (60,)"),
    Case("params: a single bool", lambda ctx: _train(ctx).params(True), ValueError, "single bool"),
    Case("params: a string", lambda ctx: _train(ctx).params("all"), ValueError, "got str of dtype <U3"),
    Case("batch: index out of range", lambda ctx: _train(ctx).batch([0, 60]), IndexError, "index 60 out of range"),
    Case("dataset[float]", lambda ctx: _train(ctx)[1.5], ValueError, "one integer index"),
    Case("loader: batch_size=0", lambda ctx: _train(ctx).loader(0), ValueError, "batch_size=0"),
    Case("loader: batch_size=2.5", lambda ctx: _train(ctx).loader(2.5), ValueError, "batch_size=2.5"),
    # --- dataset files: writing
    Case("save: label 57 in a 10-class dataset", lambda ctx: _save(ctx, [0, 3, 57, 1]), ValueError,
         "label 57 at index 2 is outside [0, 10)"),
    Case("save: float label 1.5", lambda ctx: _save(ctx, [0.0, 1.5, 2.0, 3.0]), ValueError,
         "labels must be integers, got 1.5"),
    Case("save: negative label", lambda ctx: _save(ctx, [0, -1, 2, 3]), ValueError, "label -1 at index 1"),
    Case("save: num_classes=0", lambda ctx: _save(ctx, [0, 0, 0, 0], num_classes=0), ValueError,
         "num_classes must be an integer >= 1"),
    Case("save: labels of shape (4, 1)", lambda ctx: _save(ctx, [[0], [1], [2], [3]]), ValueError,
         "labels must have shape"),
    Case("save: NaN weights", lambda ctx: _save(ctx, [0, 1, 2, 3], nan=True), ValueError,
         "1 of 4 INRs have non-finite"),
    # --- dataset files: reading
    Case("load: bytes overwritten in the middle", lambda ctx: _dataset(_corrupted(ctx)), ValueError,
         "checksum mismatch"),
    Case("load: label 57 stored in a 10-class file",
         lambda ctx: _dataset(_rewritten(ctx, labels=_label_57)), ValueError, "label 57"),
    Case("load: format_version 1 file",
         lambda ctx: _dataset(_rewritten(ctx, format_version=lambda v: 1)), ValueError,
         "older neuralgraph"),
    Case("load: float labels stored",
         lambda ctx: _dataset(_rewritten(ctx, labels=lambda y: y.double())), ValueError,
         "expected int64"),
    Case("load_splits: val fitted with other steps", lambda ctx: _load_splits(_mixed_splits(ctx)), ValueError,
         "steps=2 (train.pt: 20)"),
    Case("load_splits: val with another num_classes", lambda ctx: _load_splits(_other_num_classes(ctx)),
         ValueError, "num_classes 11 differs"),
    Case("load_splits: val with another activation", lambda ctx: _load_splits(_other_activation(ctx)), ValueError,
         "val.pt: architecture differs from train.pt's: layer 1 post relu() here, sine(10.0) in train.pt"),
    # --- fitting
    Case("fit_sirens: lr=inf", lambda ctx: _fit(DIGITS, lr=float("inf")), ValueError, "lr=inf"),
    Case("fit_sirens: lr=nan", lambda ctx: _fit(DIGITS, lr=float("nan")), ValueError, "lr=nan"),
    Case("fit_sirens: w0=0", lambda ctx: _fit(DIGITS, w0=0), ValueError, "w0=0"),
    Case("fit_sirens: steps=2.5", lambda ctx: _fit(DIGITS, steps=2.5), ValueError, "steps=2.5"),
    Case("fit_sirens: batch_size=0", lambda ctx: _fit(DIGITS, batch_size=0), ValueError, "batch_size"),
    Case("fit_sirens: no images", lambda ctx: _fit(torch.rand(0, 8, 8)), ValueError, "no images"),
    Case("fit_sirens: images in 0..255", lambda ctx: _fit(DIGITS * 255), ValueError, "must be in [0, 1]"),
    Case("fit_sirens: images of rank 5", lambda ctx: _fit(torch.rand(2, 1, 8, 8, 1)), ValueError,
         "[n, H, W] or [n, H, W, C]"),
    Case("fit_sirens: w0=1e30 diverges", lambda ctx: _fit(DIGITS, w0=1e30, steps=3), FloatingPointError,
         "SIREN fitting diverged after"),
    Case("fit_to_dataset: lr=1e30 diverges", lambda ctx: _fit_to_dataset(ctx, lr=1e30, steps=5),
         FloatingPointError, "train.pt, chunk 0 (images 0..3): SIREN fitting diverged"),
    Case("fit_to_dataset: chunk_size=0", lambda ctx: _fit_to_dataset(ctx, chunk_size=0), ValueError,
         "chunk_size=0"),
    Case("fit_to_dataset: steps=0", lambda ctx: _fit_to_dataset(ctx, steps=0), ValueError, "steps=0"),
    Case("fit_to_dataset: label 57", lambda ctx: _fit_to_dataset(ctx, labels=[0, 57, 1, 2]), ValueError,
         "label 57"),
    Case("fit_to_dataset: no images", lambda ctx: _fit_to_dataset(ctx, n=0), ValueError, "no images to fit"),
    # --- building splits
    Case("build: n_train=0", lambda ctx: _build(ctx, n_train=0), ValueError, "n_train=0"),
    Case("build: negative seed", lambda ctx: _build(ctx, seed=-1), ValueError, "seed must be an integer >= 0, got -1"),
    Case("build: init unknown", lambda ctx: _build(ctx, init="xavier"), ValueError, "init must be one of"),
    Case("build: n_train beyond the data", lambda ctx: _build(ctx, n_train=5000), ValueError,
         "n_train=5000, but only"),
    Case("build: n_val beyond the data", lambda ctx: _build(ctx, n_val=5000), ValueError, "n_val=5000"),
    Case("build: n_test too small to stratify", lambda ctx: _build(ctx, n_test=3), ValueError, "n_test=3"),
    Case("build: root with digits", lambda ctx: _build(ctx, root=ctx.tmp), ValueError, "only read for mnist"),
    Case("build: rerun with other settings", lambda ctx: _build(ctx, out=ctx.copy_data(), n_train=60, steps=21),
         ValueError, "steps 20 there, 21 now"),
    Case("build: split files without a manifest",
         lambda ctx: (_files_without_manifest(ctx), _build(ctx, out=ctx.tmp / "data_copy", n_train=60, steps=20)),
         ValueError, "without a readable manifest.json"),
    # --- IDX / MNIST files
    Case("idx: wrong magic", lambda ctx: (ctx.tmp.joinpath("a.idx").write_bytes(b"\x01\x00\x08\x01" + b"\0" * 8),
                                          _load_idx(ctx.tmp / "a.idx")), ValueError, "bad IDX magic"),
    Case("mnist: one label missing", lambda ctx: _load_mnist(_mnist_labels_short(ctx)), ValueError, "3 images but"),
    Case("mnist: float labels", lambda ctx: _load_mnist(_mnist_dir(ctx, np.zeros((3, 2, 2)), np.zeros(3),
                                                                  label_code=0x0D)), ValueError,
         "labels must be integers"),
    Case("mnist: int16 images", lambda ctx: _load_mnist(_mnist_dir(ctx, np.zeros((3, 2, 2)), np.zeros(3),
                                                                  image_code=0x0B)), ValueError,
         "images must be uint8"),
    Case("mnist: float images in 0..255", lambda ctx: _load_mnist(_mnist_dir(ctx, np.full((3, 2, 2), 200.0),
                                                                            np.zeros(3), image_code=0x0D)),
         ValueError, "must be in [0, 1]"),
    Case("mnist: label 57 of 10 classes", lambda ctx: _load_mnist(_mnist_dir(ctx, np.zeros((3, 2, 2)),
                                                                             np.array([0, 57, 1]))), ValueError,
         "train-labels-idx1-ubyte: label 57 at index 1 is outside [0, 10)"),
    # --- the fit-inrs command
    cli_case("fit-inrs: --lr inf", FIT_INRS + ["--lr", "inf"], "lr"),     # argparse or build_inr_splits
    cli_case("fit-inrs: --lr nan", FIT_INRS + ["--lr", "nan"], "lr"),
    cli_case("fit-inrs: --w0 1e30 diverges", FIT_INRS + ["--w0", "1e30"], "SIREN fitting diverged"),
    cli_case("fit-inrs: --seed -1", FIT_INRS + ["--seed", "-1"], "seed must be an integer >= 0, got -1"),
    cli_case("fit-inrs: --root with digits", FIT_INRS + ["--root", "{tmp}"], "--source mnist"),
    cli_case("fit-inrs: --n-val beyond the data", FIT_INRS + ["--n-val", "100000"], "n_val=100000"),
    cli_case("fit-inrs: mnist --root without the files",
             ["fit-inrs", "--source", "mnist", "--root", "{tmp}", "--out", "{tmp}/inrs"], "neither"),
    cli_case("fit-inrs: rerun with other --steps", SHARED_FIT + ["--out", "{tmp}/data_copy", "--steps", "21"],
             "--overwrite", setup=lambda ctx: ctx.copy_data()),
]


def _load_idx(path: Path):
    from neuralgraph.data import load_idx

    return load_idx(path)


def _mnist_labels_short(ctx: Ctx) -> Path:
    root = _mnist_dir(ctx, np.zeros((3, 2, 2)), np.zeros(3))
    _write_idx(root / "train-labels-idx1-ubyte", np.zeros(2), 0x08)
    return root
