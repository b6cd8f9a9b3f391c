"""INR dataset files: streamed statistics, resumable fitting, lazy vectorised batches, splits."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import neuralgraph as ng
from neuralgraph.augment import Augment
from neuralgraph.data import load_digits, load_mnist
from neuralgraph.inr import (INRDataset, RunningMoments, build_inr_splits, fit_sirens, fit_to_dataset,
                             image_grid, layer_stats, load_inr_file, psnr, save_inr_dataset,
                             siren_architecture, siren_forward)
from locking import locked_by_another_process

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist"
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST IDX files not found at {MNIST}")
STEPS = 40


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    return x[:40], y[:40]


@pytest.fixture(scope="module")
def reference(digits, tmp_path_factory):
    """An uninterrupted chunked fit of 40 digits (3 chunks)."""
    path = tmp_path_factory.mktemp("ref") / "train.pt"
    x, y = digits
    fit_to_dataset(x, y, path, chunk_size=16, steps=STEPS, seed=7, progress=False, num_classes=10)
    return path


def same_file(a: Path, b: Path) -> bool:
    A, B = load_inr_file(a, mmap=False), load_inr_file(b, mmap=False)
    return all(torch.equal(s, t) for s, t in zip(A["weights"] + A["biases"] + [A["psnr"], A["labels"]],
                                               B["weights"] + B["biases"] + [B["psnr"], B["labels"]]))


@pytest.mark.parametrize("seed", range(3))
def test_running_moments_match_torch(seed):
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(300, 7, 3, generator=g) * 3 + 1, torch.rand(300, 1, 7, generator=g)]
    b = [torch.randn(300, 7, generator=g) - 2, torch.randn(300, 1, generator=g) * 1e-3]
    rm = RunningMoments(2)
    cuts = [0, 1, 17, 18, 150, 299, 300]              # uneven chunks, including size 1
    for s, e in zip(cuts[:-1], cuts[1:]):
        rm.update([t[s:e] for t in w], [t[s:e] for t in b])
    st = rm.result()
    for m in range(2):
        torch.testing.assert_close(st["weight_mean"][m], w[m].double().mean().float())
        torch.testing.assert_close(st["weight_std"][m], w[m].double().std().float())
        torch.testing.assert_close(st["bias_mean"][m], b[m].double().mean().float())
        torch.testing.assert_close(st["bias_std"][m], b[m].double().std().float())
    st2 = layer_stats(w, b, chunk=64)
    for k in ("weight_mean", "weight_std", "bias_mean", "bias_std"):
        torch.testing.assert_close(st2[k], st[k])


def test_split_file_contents(reference, digits):
    x, y = digits
    ds = INRDataset(reference)
    assert len(ds) == 40 and ds.arch == siren_architecture(offset=0.5)
    assert torch.equal(ds.labels, y) and torch.equal(ds.source_index, torch.arange(40))
    assert ds.meta["fit"]["steps"] == STEPS
    assert not (reference.parent / "train.pt.chunks").exists()        # merged, chunks removed
    # stored PSNR is the PSNR of the stored weights on the source images
    w, b = ds.params(slice(None))
    img = siren_forward(w, b, image_grid(8, 8)).reshape(40, 8, 8) + 0.5
    torch.testing.assert_close(psnr(img, x), ds.psnr, rtol=1e-4, atol=1e-3)
    assert float(ds.psnr.min()) > 30
    # stats are those of the full stack
    for m in range(3):
        torch.testing.assert_close(ds.stats["weight_std"][m], w[m].std(), rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(ds.stats["bias_mean"][m], b[m].mean(), rtol=1e-4, atol=1e-7)
    # chunk k is exactly fit_sirens with seed derive_seed(seed, k)
    from neuralgraph.inr import derive_seed
    r1 = fit_sirens(x[16:32], steps=STEPS, seed=derive_seed(7, 1), progress=False)
    assert all(torch.equal(s, t[16:32]) for s, t in zip(r1.weights + r1.biases, w + b))


def test_interrupted_fit_resumes_bit_exactly(reference, digits, tmp_path):
    x, y = digits
    path = tmp_path / "train.pt"
    seen = []

    def stop_after_two(k, n):
        seen.append(k)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_to_dataset(x, y, path, num_classes=10, chunk_size=16, steps=STEPS, seed=7, progress=False,
                       on_chunk=stop_after_two)
    chunks = sorted(p.name for p in (tmp_path / "train.pt.chunks").iterdir())
    assert chunks == ["chunk_00000.pt", "chunk_00001.pt"] and not path.exists()
    mtime = (tmp_path / "train.pt.chunks" / "chunk_00000.pt").stat().st_mtime_ns
    resumed = []
    fit_to_dataset(x, y, path, num_classes=10, chunk_size=16, steps=STEPS, seed=7, progress=False, keep_chunks=True,
                   on_chunk=lambda k, n: resumed.append(k))
    assert resumed == [2]                                               # finished chunks not redone
    assert (tmp_path / "train.pt.chunks" / "chunk_00000.pt").stat().st_mtime_ns == mtime
    assert same_file(path, reference)

    # a half-written chunk is refit, never trusted; the result is still identical
    path.unlink()                                                        # crash before the merge
    c1 = tmp_path / "train.pt.chunks" / "chunk_00001.pt"
    c1.write_bytes(c1.read_bytes()[: c1.stat().st_size // 2])
    refit = []
    fit_to_dataset(x, y, path, num_classes=10, chunk_size=16, steps=STEPS, seed=7, progress=False, keep_chunks=True,
                   on_chunk=lambda k, n: refit.append(k))
    assert refit == [1] and same_file(path, reference)

    # chunks from other settings (here: other steps) are not reused
    other = []
    fit_to_dataset(x, y, path, num_classes=10, chunk_size=16, steps=STEPS + 1, seed=7, progress=False,
                   on_chunk=lambda k, n: other.append(k))
    assert other == [0, 1, 2] and not same_file(path, reference)
    # a finished split with the same settings is not redone at all
    mtime = path.stat().st_mtime_ns
    fit_to_dataset(x, y, path, num_classes=10, chunk_size=16, steps=STEPS + 1, seed=7, progress=False,
                   on_chunk=lambda k, n: other.append(k))
    assert other == [0, 1, 2] and path.stat().st_mtime_ns == mtime
    # resume=False refits everything
    again = []
    fit_to_dataset(x, y, path, num_classes=10, chunk_size=16, steps=STEPS, seed=7, progress=False, resume=False,
                   on_chunk=lambda k, n: again.append(k))
    assert again == [0, 1, 2] and same_file(path, reference)


def test_batches_are_vectorised_views_of_the_file(reference, digits):
    x, _ = digits
    ds = INRDataset(reference)
    idx = torch.tensor([5, 0, 39, 5, -1])
    batch = ds.batch(idx)
    assert batch.num_graphs == 5 and batch.y.tolist() == ds.labels[idx].tolist()
    assert batch.inr_index.tolist() == [5, 0, 39, 5, 39]
    w, b = ng.batch_to_stacked(batch)
    ref_w, ref_b = ds.params(idx)
    assert all(torch.equal(s, t) for s, t in zip(w + b, ref_w + ref_b))
    # a single item is a graph whose model renders the digit it was fitted to
    g = ds[3]
    assert int(g.y) == int(ds.labels[3])
    with torch.no_grad():
        img = ng.to_model(g)(image_grid(8, 8)).reshape(1, 8, 8)        # the +0.5 offset is in the model
    torch.testing.assert_close(psnr(img, x[3:4]), ds.psnr[3:4], rtol=1e-4, atol=1e-3)
    with pytest.raises(IndexError):
        ds.batch([40])


def test_normalisation_and_augmented_loader(reference):
    ds = INRDataset(reference, normalize=True)
    allb = ds.batch(torch.arange(40))
    w, b = ng.batch_to_stacked(allb)
    for m in range(3):
        assert abs(float(w[m].mean())) < 1e-5 and abs(float(w[m].std()) - 1) < 1e-4
        assert abs(float(b[m].mean())) < 1e-5 and abs(float(b[m].std()) - 1) < 1e-4
    # same arithmetic as normalising the stacked tensors; the raw parameters travel along
    from neuralgraph.inr.stats import normalize_params
    raw_w, raw_b = ds.params(torch.arange(40))
    nw, nb = normalize_params(raw_w, raw_b, ds.stats)
    assert all(torch.equal(a, c) for a, c in zip(w, nw)) and all(torch.equal(a, c) for a, c in zip(b, nb))
    plain = ds.batch(torch.arange(40), normalize=False)
    assert torch.equal(allb.x_raw, plain.x) and torch.equal(allb.edge_attr_raw, plain.edge_attr)
    one = allb.get_example(3)
    assert torch.equal(one.x_raw, plain.get_example(3).x)
    assert torch.equal(one.edge_attr_raw, plain.get_example(3).edge_attr)
    # the shuffled loader visits every INR once, in a generator-determined order
    order = []
    loader = ds.loader(batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0),
                       augment=Augment(permute=True))
    assert len(loader) == 3
    for batch, labels in loader:
        assert torch.equal(labels, ds.labels[batch.inr_index])
        order += batch.inr_index.tolist()
        # permutation augmentation: same functions as the raw INRs (checked on raw params)
        raw = ds.batch(batch.inr_index, normalize=False, augment=Augment(permute=True),
                       generator=torch.Generator().manual_seed(1))
        ref = ds.batch(batch.inr_index, normalize=False)
        coords = image_grid(8, 8)
        torch.testing.assert_close(siren_forward(*ng.batch_to_stacked(raw), coords),
                                   siren_forward(*ng.batch_to_stacked(ref), coords), rtol=0, atol=1e-5)
        assert not torch.equal(raw.edge_attr, ref.edge_attr)
    assert sorted(order) == list(range(40)) and order != list(range(40))
    assert len(ds.loader(16, drop_last=True)) == 2
    assert sum(bt.num_graphs for bt, _ in ds.loader(16, drop_last=True)) == 32


def test_pyg_dataloader_on_items(reference):
    from torch_geometric.loader import DataLoader

    ds = INRDataset(reference)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch.num_graphs == 4 and batch.y.tolist() == ds.labels[:4].tolist()
    fast = ds.batch(torch.arange(4))
    assert torch.equal(batch.edge_attr, fast.edge_attr) and torch.equal(batch.x, fast.x)
    assert torch.equal(batch.edge_index, fast.edge_index)


def test_file_errors(tmp_path, reference):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt"):
        INRDataset(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": []}, other)
    with pytest.raises(ValueError, match="other.pt.*missing"):
        INRDataset(other)
    obj = torch.load(reference, weights_only=True)
    obj["format_version"] = 99
    torch.save(obj, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="future.pt.*format_version 99"):
        INRDataset(tmp_path / "future.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        INRDataset(tmp_path / "absent.pt")
    arch = siren_architecture()
    w = [torch.zeros(3, 32, 2), torch.zeros(3, 32, 32), torch.zeros(3, 1, 31)]
    b = [torch.zeros(3, 32), torch.zeros(3, 32), torch.zeros(3, 1)]
    with pytest.raises(ValueError, match="layer 3"):
        save_inr_dataset(tmp_path / "bad.pt", w, b, torch.zeros(3, dtype=torch.long), arch, num_classes=10)
    assert not (tmp_path / "bad.pt").exists()


def test_build_digit_splits(tmp_path):
    paths = build_inr_splits("digits", tmp_path, steps=5, progress=False, n_train=200)
    x, y = load_digits()
    sets = {}
    for name, p in paths.items():
        ds = INRDataset(p)
        sets[name] = set(ds.source_index.tolist())
        assert torch.equal(ds.labels, y[ds.source_index])
        assert ds.meta["split"] == name and ds.meta["source"] == "digits"
    assert len(sets["train"]) == 200 and len(sets["val"]) == 359 and len(sets["test"]) == 360
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    counts = torch.bincount(INRDataset(paths["test"]).labels, minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 37                 # stratified


@needs_mnist
def test_build_mnist_splits(tmp_path):
    paths = build_inr_splits("mnist", tmp_path, root=MNIST, n_train=24, n_val=20, n_test=16, steps=3,
                             progress=False)
    tr_x, tr_y = load_mnist(MNIST, "train")
    te_x, te_y = load_mnist(MNIST, "test", limit=16)
    train, val, test = (INRDataset(paths[k]) for k in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (24, 20, 16)
    assert torch.equal(train.labels, tr_y[train.source_index]) and torch.equal(val.labels, tr_y[val.source_index])
    assert torch.equal(test.labels, te_y) and torch.equal(test.source_index, torch.arange(16))
    assert not set(train.source_index.tolist()) & set(val.source_index.tolist())
    with pytest.raises(ValueError, match="root"):
        build_inr_splits("mnist", tmp_path / "x")


# ----------------------------------------------------------------------------
# issue 9: silent wrong results
# ----------------------------------------------------------------------------

MASKED = [3, 17, 38]


def _mask() -> torch.Tensor:
    mask = torch.zeros(40, dtype=torch.bool)
    mask[MASKED] = True
    return mask


@pytest.mark.parametrize("select, expected", [
    pytest.param(_mask(), MASKED, id="bool tensor"),
    pytest.param(_mask().tolist(), MASKED, id="bool list"),
    pytest.param(_mask().numpy(), MASKED, id="bool numpy"),
    pytest.param(np.array([38, 2, 2]), [38, 2, 2], id="int numpy"),
    pytest.param(torch.tensor([38, 2], dtype=torch.int32), [38, 2], id="int32 tensor"),
    pytest.param([-1, 0, -40], [39, 0, 0], id="negative list"),
    pytest.param(7, [7], id="int"),
    pytest.param(np.int64(-2), [38], id="numpy int"),
    pytest.param(torch.tensor(5), [5], id="0-d tensor"),
    pytest.param(slice(30, None, 4), [30, 34, 38], id="slice"),
    pytest.param([], [], id="empty list"),
])
def test_batch_and_params_select_exactly_the_asked_inrs(reference, select, expected):
    ds = INRDataset(reference)
    batch = ds.batch(select)
    assert batch.num_graphs == len(expected)
    assert batch.inr_index.tolist() == expected and batch.y.tolist() == ds.labels[expected].tolist()
    w, b = ds.params(select)
    for got, full in zip(w + b, ds.weights + ds.biases):
        assert torch.equal(got, full[expected])


def test_rerun_with_other_settings_is_refused_and_overwrite_replaces(tmp_path):
    kw = dict(n_train=20, n_val=20, n_test=20, progress=False)
    paths = build_inr_splits("digits", tmp_path, steps=3, **kw)
    mtimes = {k: p.stat().st_mtime_ns for k, p in paths.items()}
    with pytest.raises(ValueError, match=r"steps.*--overwrite"):
        build_inr_splits("digits", tmp_path, steps=4, **kw)
    assert {k: p.stat().st_mtime_ns for k, p in paths.items()} == mtimes           # nothing touched
    build_inr_splits("digits", tmp_path, steps=3, **kw)                              # same settings: reused
    assert {k: p.stat().st_mtime_ns for k, p in paths.items()} == mtimes
    build_inr_splits("digits", tmp_path, steps=4, overwrite=True, **kw)
    assert all(INRDataset(p).meta["fit"]["steps"] == 4 for p in paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "manifest.json", "test.pt", "train.pt", "val.pt"]
    assert json.loads((tmp_path / "manifest.json").read_text())["settings"]["steps"] == 4


def test_a_second_fit_into_the_same_directory_is_refused(tmp_path, capsys):
    """Two fits into one directory would interleave their splits: the second fails at once, naming the holder."""
    from neuralgraph.cli import main
    from neuralgraph.io import DirectoryBusy

    out = tmp_path / "inrs"
    with locked_by_another_process(out) as pid:
        with pytest.raises(DirectoryBusy, match=f"{out}.*process {pid}"):
            build_inr_splits("digits", out, n_train=20, n_val=20, n_test=20, steps=3, progress=False)
        assert main(["fit-inrs", "--out", str(out), "--steps", "3", "--n-train", "20", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"process {pid}" in err, err
        assert not any(out.glob("*.pt")) and not (out / "manifest.json").exists()
    build_inr_splits("digits", out, n_train=20, n_val=20, n_test=20, steps=3, progress=False)  # released


def test_killed_runs_never_leave_a_mixed_directory(tmp_path):
    from neuralgraph.train import load_splits

    kw = dict(n_train=20, n_val=20, n_test=20, progress=False)
    calls = []

    def kill_after_two_splits(k, n):
        calls.append(k)
        if len(calls) == 2:
            raise KeyboardInterrupt

    # a first run killed after train and val: a rerun with other settings is refused
    with pytest.raises(KeyboardInterrupt):
        build_inr_splits("digits", tmp_path, steps=3, on_chunk=kill_after_two_splits, **kw)
    with pytest.raises(ValueError, match="steps"):
        build_inr_splits("digits", tmp_path, steps=4, **kw)
    build_inr_splits("digits", tmp_path, steps=3, **kw)
    # an overwrite killed half-way keeps the complete old dataset in place
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        build_inr_splits("digits", tmp_path, steps=4, overwrite=True, on_chunk=kill_after_two_splits, **kw)
    assert {d.meta["fit"]["steps"] for d in load_splits(tmp_path).values()} == {3}
    calls.clear()
    build_inr_splits("digits", tmp_path, steps=4, overwrite=True, on_chunk=lambda k, n: calls.append(k), **kw)
    assert len(calls) == 1                                              # train and val were not refit
    assert {d.meta["fit"]["steps"] for d in load_splits(tmp_path).values()} == {4}


def test_load_splits_refuses_splits_fitted_with_other_settings(tmp_path):
    from neuralgraph.train import load_splits

    kw = dict(n_train=20, n_val=20, n_test=20, progress=False)
    build_inr_splits("digits", tmp_path / "a", steps=3, **kw)
    build_inr_splits("digits", tmp_path / "b", steps=4, **kw)
    os.replace(tmp_path / "b" / "val.pt", tmp_path / "a" / "val.pt")
    with pytest.raises(ValueError, match=r"val.pt.*steps"):
        load_splits(tmp_path / "a")


def test_num_classes_is_stored_not_guessed_from_labels(tmp_path, digits):
    x, y = digits
    keep = y < 5
    path = fit_to_dataset(x[keep], y[keep].double(), tmp_path / "few.pt", steps=2, num_classes=10, progress=False)
    ds = INRDataset(path)
    assert ds.num_classes == 10 and ds.labels.dtype == torch.int64 and int(ds.labels.max()) == 4
    assert torch.equal(ds.labels, y[keep])


def test_diverging_fit_writes_nothing(tmp_path, digits):
    x, y = digits
    with pytest.raises(FloatingPointError, match="non-finite"):
        fit_to_dataset(x[:8], y[:8], tmp_path / "train.pt", w0=1e30, steps=3, num_classes=10, progress=False)
    assert not (tmp_path / "train.pt").exists() and not any((tmp_path / "train.pt.chunks").glob("*.pt"))


def test_corrupted_file_is_detected(reference, tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(reference.read_bytes())
    INRDataset(path)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\xab" * 16)
    with pytest.raises(ValueError, match="corrupt.pt.*checksum"):
        INRDataset(path)
    assert len(INRDataset(path, verify=False)) == 40                   # still readable when asked to


def test_layers_with_zero_spread_normalise_by_one(tmp_path):
    """A layer constant over the train split is centred, not divided by ~0 (val values would explode)."""
    from neuralgraph.inr.stats import normalize_params

    arch = siren_architecture((2, 4, 1))
    w = [torch.randn(6, 4, 2), torch.randn(6, 1, 4)]
    b = [torch.full((6, 4), 0.25), torch.randn(6, 1)]
    stats = layer_stats(w, b)
    shifted = [b[0] + 0.01, b[1]]
    _, nb = normalize_params(w, shifted, stats)
    torch.testing.assert_close(nb[0], torch.full((6, 4), 0.01))
    save_inr_dataset(tmp_path / "val.pt", w, shifted, torch.zeros(6, dtype=torch.long), arch, stats=stats,
                     num_classes=2)
    batch = INRDataset(tmp_path / "val.pt", normalize=True).batch(slice(None))
    assert float(batch.x.abs().max()) < 10


def test_a_split_fitted_by_the_device_path_is_the_same_dataset(tmp_path, digits, reference):
    """The GPU code path (run here on CPU) writes the same file format and the same fingerprint as the fast
    CPU path, so a device-fitted dataset loads like a CPU one and a fit may resume on another device."""
    x, y = digits
    path = tmp_path / "train.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)           # tiny batches: intra-op threads only add contention on a shared machine
    try:
        fit_to_dataset(x, y, path, chunk_size=16, steps=STEPS, seed=7, progress=False, num_classes=10,
                       method="device", keep_chunks=True)
    finally:
        torch.set_num_threads(threads)
    A, B = load_inr_file(path), load_inr_file(reference)
    assert A["meta"]["fingerprint"] == B["meta"]["fingerprint"] and A["meta"]["fit"] == B["meta"]["fit"]
    for s, t in zip(A["weights"] + A["biases"], B["weights"] + B["biases"]):
        assert s.device.type == "cpu" and s.dtype == torch.float32
        torch.testing.assert_close(s, t, rtol=1e-4, atol=2e-6)
    assert torch.equal(A["labels"], B["labels"])
    batch = INRDataset(path, normalize=True).batch([0, 5, 39])
    assert batch.num_graphs == 3 and torch.isfinite(batch.x).all()
    # drop one device-fitted chunk: the CPU rerun refits only that one and keeps the others
    chunks = sorted((tmp_path / "train.pt.chunks").glob("chunk_*.pt"))
    kept = chunks[0].stat().st_mtime_ns
    chunks[1].unlink()
    path.unlink()
    fit_to_dataset(x, y, path, chunk_size=16, steps=STEPS, seed=7, progress=False, num_classes=10)
    assert chunks[0].exists() is False or chunks[0].stat().st_mtime_ns == kept
    torch.testing.assert_close(load_inr_file(path)["weights"][1], B["weights"][1], rtol=1e-4, atol=2e-6)


def test_early_stopping_is_part_of_the_fingerprint(tmp_path):
    """target_psnr changes the protocol: recorded in the manifest and the split, a rerun without it is refused."""
    kw = dict(n_train=20, n_val=20, n_test=20, steps=300, progress=False)
    paths = build_inr_splits("digits", tmp_path, target_psnr=30.0, **kw)
    assert json.loads((tmp_path / "manifest.json").read_text())["settings"]["target_psnr"] == 30.0
    train = INRDataset(paths["train"])
    assert train.meta["fit"]["target_psnr"] == 30.0
    assert float(train.psnr.min()) >= 30.0                       # measured: 8x8 digits reach 30 dB in 40-70 steps
    with pytest.raises(ValueError, match="target_psnr"):
        build_inr_splits("digits", tmp_path, **kw)
    # the device (and the batch size on it) is not a setting: the same directory is resumed, nothing refit
    mtimes = {k: p.stat().st_mtime_ns for k, p in paths.items()}
    build_inr_splits("digits", tmp_path, target_psnr=30.0, method="device", device="cpu", device_batch_size=7, **kw)
    assert {k: p.stat().st_mtime_ns for k, p in paths.items()} == mtimes
    # a fixed-step fit keeps the manifest of older versions (no target_psnr key)
    build_inr_splits("digits", tmp_path / "fixed", **kw)
    assert "target_psnr" not in json.loads((tmp_path / "fixed" / "manifest.json").read_text())["settings"]


@pytest.mark.slow
def test_reproduction_script_runs_in_resumable_time_slices(tmp_path, monkeypatch):
    """benchmarks/reproduce_inr_classification.py end to end at tiny size: an invocation out of time stops
    between chunks, the next continues (one epoch per train call), finished runs are recorded once with their
    per-epoch history and the commits that trained them, a variant is its own row, the report lists them with
    their commit and machine, a new work directory seeded with the recorded rows neither fits nor trains
    them again, and an invocation that waited for a run's lock goes on from the state its holder left."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("repro", REPO / "benchmarks" / "reproduce_inr_classification.py")
    repro = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(repro)
    argv = ["--work", str(tmp_path), "--datasets", "digits", "--models", "nggnn", "--fit", "fixed",
            "--n-train", "40", "--n-val", "20", "--n-test", "20", "--chunk-size", "20", "--fit-steps", "20",
            "--epochs", "2", "--hidden", "8", "--num-layers", "1", "--batch-size", "16", "--device", "cpu", "--quiet"]
    assert repro.main(argv + ["--budget", "0.001"]) == []            # out of time after the first chunk
    chunks = list((tmp_path / "digits_fixed").glob("*.chunks/chunk_*.pt"))
    assert len(chunks) == 1 and not (tmp_path / "results.jsonl").exists()
    rows = repro.main(argv)
    assert [r["model"] for r in rows] == ["nggnn"]
    variant = repro.main(argv + ["--variant", "probes", "--model-arg", "use_probes=true", "--model-arg", "n_probes=2"])
    assert [r["id"] for r in variant] == ["digits/fixed/nggnn_probes"]
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == ["digits/fixed/nggnn", "digits/fixed/nggnn_probes"]
    for r in lines:
        assert r["epochs"] == 2 and 0.0 <= r["test_acc"] <= 1.0 and r["n_train"] == 40
        assert r["fit_settings"] == {"steps": 20, "lr": 1e-3} and r["device"] == "cpu"
        assert "1 thread" in r["machine"] and r["epoch_s"] > 0 and abs(r["epoch_s"] - r["train_s"] / 2) <= 0.1
        assert r["fit_chunks_timed"] == 4 and r["fit_s"] > 0     # 2 + 1 + 1 chunks, over both invocations
        assert [h["epoch"] for h in r["history"]] == [1, 2] and all(0 <= h["val_acc"] <= 1 for h in r["history"])
        assert max(h["val_acc"] for h in r["history"]) == r["val_acc"]     # the curve the row's numbers come from
        assert r["commit"] == repro._commit() and r["commits"] == [r["commit"]]   # one invocation trained it all
    assert lines[0]["config"]["model_kwargs"] == {"hidden": 8, "num_layers": 1, "use_probes": False}
    assert lines[1]["config"]["model_kwargs"] == {"hidden": 8, "num_layers": 1, "use_probes": True, "n_probes": 2}
    assert lines[0]["config"]["clip_grad_norm"] == 10.0 and lines[0]["config"]["batch_size"] == 16
    # both papers train on augmented INRs (translate 0.25, rotate 45 degrees, scale 0.2, 1 % weight dropout)
    assert lines[0]["config"]["augment"] == lines[1]["config"]["augment"] == repro.PAPER_AUGMENT
    assert repro.PAPER_AUGMENT == {"translate": 0.25, "rotate": 45.0, "scale": 0.2, "dropout": 0.01}
    # the papers' settings of the other models (DWSNets trainer defaults but lr 1e-3, see the script's docstring;
    # 1000 warm-up steps for NG-T), with the CPU profile's epochs by default and the papers' on request; the
    # schedule always spans the epochs run
    args = repro.argparse.Namespace(hidden=None, num_layers=None, batch_size=None, epochs=None, device="cpu", seed=0,
                                    epochs_profile="paper", model_arg=[], augment=[("rotate", "0"), ("dropout", "0")])
    noaug = repro._train_config("nggnn", tmp_path / "digits_fixed", tmp_path / "v", 55000, args)
    assert noaug.augment == {"translate": 0.25, "rotate": 0, "scale": 0.2, "dropout": 0}   # a variant's fields
    with pytest.raises(SystemExit):                                     # a changed augmentation is a variant
        repro.main(argv + ["--augment", "rotate=0"])
    args.augment = []
    dws = repro._train_config("dwsnet", tmp_path / "digits_fixed", tmp_path / "x", 55000, args)
    assert (dws.lr, dws.batch_size, dws.epochs, dws.clip_grad_norm) == (1e-3, 512, 100, 0.0)
    ngt = repro._train_config("ngt", tmp_path / "digits_fixed", tmp_path / "y", 55000, args)
    assert ngt.model_kwargs["hidden"] == 64 and ngt.model_kwargs["edge_hidden"] == 32   # neural-graphs' RT widths
    assert ngt.epochs == 200 and abs(ngt.warmup_epochs - 1000 / 430) < 1e-9
    args.epochs_profile = "cpu"
    assert repro._train_config("nggnn", tmp_path / "digits_fixed", tmp_path / "z", 55000, args).epochs == 30
    assert repro._train_config("dwsnet", tmp_path / "digits_fixed", tmp_path / "z", 55000, args).epochs == 60
    state = json.loads((tmp_path / "state" / "digits_fixed_nggnn.json").read_text())
    assert state["epochs_done"] == 2 and state["finished"]
    assert repro.main(argv) == []                                       # nothing new: recorded once
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
    report = (tmp_path / "results.md").read_text()
    assert report.count("| digits | nggnn |") == 2 and "| probes |" in report
    first = next(line.split(" | ") for line in report.splitlines() if line.startswith("| digits | nggnn |  |"))
    assert first[8] == f"{lines[0]['train_s'] / 2:.0f}"                 # s / epoch: the run's mean
    fit_rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| digits | fixed |")]
    assert [(r[2], r[3]) for r in fit_rows] == [("train", "40"), ("val", "20"), ("test", "20")]
    assert all(float(r[4]) > 10 for r in fit_rows) and "(4 chunks)" in fit_rows[0][-1]   # PSNR in dB; chunks timed
    assert (tmp_path / "learning_curves_digits.png").stat().st_size > 0
    # a new work directory seeded with the recorded rows neither fits nor trains them again, and reports them
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "results.jsonl").write_text((tmp_path / "results.jsonl").read_text())
    assert repro.main([str(fresh) if a == str(tmp_path) else a for a in argv]) == []
    assert sorted(p.name for p in fresh.iterdir()) == ["results.jsonl"]
    repro.write_report(fresh)
    assert (fresh / "results.md").read_text().count("| digits | nggnn |") == 2
    assert (fresh / "learning_curves_digits.png").stat().st_size > 0       # drawn from the rows' history
    # a run whose first epoch an older version of the script trained (its state has no commits): the row
    # says that some epochs came from an unrecorded commit (None), then names the commit that trained the rest
    from neuralgraph.train import train

    legacy = argv + ["--variant", "legacy", "--model-arg", "use_probes=false"]
    ns = repro.argparse.Namespace(hidden=8, num_layers=1, batch_size=16, epochs=2, device="cpu", seed=0,
                                  epochs_profile="cpu", model_arg=[("use_probes", "false")], augment=[])
    config = repro._train_config("nggnn", tmp_path / "digits_fixed", tmp_path / "digits_fixed" / "run_nggnn_legacy",
                                 40, ns)
    assert train(config, resume=True, progress=False, verbose=False, stop_after_epoch=1).epochs_done == 1
    old_state = {"epochs_done": 1, "epoch_s": 1.0, "train_s": 1.0}       # what the script wrote before commits
    (tmp_path / "state" / repro._state_name("digits/fixed/nggnn_legacy")).write_text(json.dumps(old_state))
    [row] = repro.main(legacy)
    assert row["epochs"] == 2 and row["commits"] == [None, row["commit"]]
    # an invocation that waited for a run's lock reads the run's state after the holder let go: here the
    # holder (another process) trained the first epoch meanwhile, so the row adds its time and commit
    import threading

    waited = argv + ["--variant", "waited", "--model-arg", "use_probes=false"]
    key = "digits/fixed/nggnn_waited"
    state_path = tmp_path / "state" / repro._state_name(key)
    asked, locked_by, results = threading.Event(), repro._locked, []

    def locked(directory, what, poll=5.0):
        if what == "run state":
            asked.set()
        return locked_by(directory, what, poll=0.05)

    monkeypatch.setattr(repro, "_locked", locked)
    with locked_by_another_process(repro._run_lock(state_path)):
        waiting = threading.Thread(target=lambda: results.append(repro.main(waited)))
        waiting.start()
        assert asked.wait(timeout=120)
        config = repro._train_config("nggnn", tmp_path / "digits_fixed",
                                     tmp_path / "digits_fixed" / "run_nggnn_waited", 40, ns)
        assert train(config, resume=True, progress=False, verbose=False, stop_after_epoch=1).epochs_done == 1
        state_path.write_text(json.dumps({"epochs_done": 1, "epoch_s": 500.0, "train_s": 500.0,
                                          "commits": ["0" * 40]}))
    waiting.join(timeout=300)
    [[row]] = results
    assert row["epochs"] == 2 and row["commits"] == ["0" * 40, row["commit"]] and row["train_s"] > 500
