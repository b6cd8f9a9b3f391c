"""Fingerprints of fitted INR splits, their chunks and zoos do not change when the code is reorganised.

A fingerprint names the settings and inputs of a fit; a resumed fit reuses a chunk (and a rerun a
finished file) only when the fingerprints match, so a change here would silently refit every
dataset and zoo on disk and orphan their chunks. The values below were written by the code
before the fitting settings became one object and ``inr/siren.py`` was split by concern
(commit 4f5d4e8); they depend only on settings and on the digests of sklearn's digits, not on
float arithmetic, so they are the same on every machine. (The fitted bits were compared old
against new code on this machine when the code moved; tests in test_inr_dataset.py pin what
depends on arithmetic: resumed == uninterrupted, device path == fast path.)
"""
from __future__ import annotations

import json

import pytest
import torch

from neuralgraph.data import load_digits
from neuralgraph.inr import build_inr_splits, fit_to_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def test_inr_split_fingerprints_are_those_of_the_files_on_disk(tmp_path):
    paths = build_inr_splits("digits", tmp_path / "a", n_train=40, n_val=20, n_test=20, steps=5, chunk_size=16,
                             progress=False, seed=3)
    meta = {s: torch.load(p, weights_only=False)["meta"] for s, p in paths.items()}
    assert {s: m["fingerprint"] for s, m in meta.items()} == {
        "train": "dafeb98fb9271043", "val": "454c12d7d9b49fe2", "test": "a1c97b8123f52c4c"}
    assert meta["train"]["fit"] == {"widths": [2, 32, 32, 1], "w0": 10.0, "steps": 5, "lr": 0.001, "offset": 0.5,
                                    "seed": 3515594314962768163, "chunk_size": 16, "batch_size": 32,
                                    "image_shape": [8, 8]}
    assert list(meta["train"]["fit"]) == ["widths", "w0", "steps", "lr", "offset", "seed", "chunk_size",
                                          "batch_size", "image_shape"]          # the order pickled in the file
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["inputs"] == {"test": "04fda33d7646202b", "train": "e038051594fa4ad3", "val": "4720502655830937"}


@pytest.mark.parametrize("name, settings, fingerprint, chunks", [
    ("early", dict(target_psnr=25.0, init="dwsnets", method="device", steps=30, w0=10.0), "60620af7e92ef31a",
     ["97d0d10540dd1e41", "f5042e00a2712815", "ca317b86b83faa30"]),
    ("small", dict(steps=4, widths=(2, 8, 8, 1), w0=10.0, lr=2e-3, offset=0.25), "04c71f0dc55ad201",
     ["fdf48c7cc506ef3e", "acaa22a586b7dfc3", "8be8c80534467372"]),
])
def test_fit_to_dataset_chunk_fingerprints_are_unchanged(tmp_path, name, settings, fingerprint, chunks):
    x, y = load_digits()
    path = fit_to_dataset(x[:30], y[:30], tmp_path / f"{name}.pt", num_classes=10, chunk_size=12, progress=False,
                          keep_chunks=True, seed=5, **settings)
    assert torch.load(path, weights_only=False)["meta"]["fingerprint"] == fingerprint
    found = [torch.load(c, weights_only=False)["fingerprint"] for c in sorted((tmp_path / f"{name}.pt.chunks").glob("*.pt"))]
    assert found == chunks


def test_zoo_fingerprint_is_unchanged(tmp_path):
    from neuralgraph.zoo import generate_zoo

    path = generate_zoo(tmp_path / "zoo.pt", family="mlp", dataset="digits", image_size=8, num_networks=5, epochs=1,
                        chunk_size=3, n_train=200, n_test=100, n_train_eval=100, batch_size=16, progress=False,
                        keep_chunks=True, num_architectures=2, seed=4)
    assert torch.load(path, weights_only=False)["meta"]["fingerprint"] == "82f6e94186a35059"
    for chunk in sorted((tmp_path / "zoo.pt.chunks").glob("chunk_*.pt")):
        assert torch.load(chunk, weights_only=False)["fingerprint"] == "82f6e94186a35059"
