"""Batched SIREN fitting on real images (sklearn digits, MNIST from ../shared)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import neuralgraph as ng
from neuralgraph.graph import graph_from_params
from neuralgraph.data import load_digits, load_mnist
from neuralgraph.inr import (derive_seed, fit_sirens, image_grid, psnr, render, siren_architecture,
                             siren_forward, siren_init)

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist"
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST IDX files not found at {MNIST}")


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    return x[:32], y[:32]


@pytest.fixture(scope="module")
def mnist():
    if not MNIST.is_dir():
        pytest.skip(f"MNIST IDX files not found at {MNIST}")
    return load_mnist(MNIST, "train", limit=64)


def test_grid_and_init_conventions():
    g = image_grid(3, 4)
    assert g.shape == (12, 2)
    torch.testing.assert_close(g[1], torch.tensor([-1.0, -1.0 / 3]))  # row-major: 2nd input moves along a row
    torch.testing.assert_close(g[4], torch.tensor([0.0, -1.0]))
    w, b = siren_init(500, (2, 32, 32, 1), 30.0, torch.Generator().manual_seed(0))
    assert [t.shape for t in w] == [(500, 32, 2), (500, 32, 32), (500, 1, 32)]
    assert all(float(x.abs().max()) == 0 for x in b)
    assert 0.49 < float(w[0].abs().max()) <= 0.5                 # U(-1/in, 1/in)
    bound = (6 / 32) ** 0.5 / 30
    assert 0.99 * bound < float(w[1].abs().max()) <= bound
    # stacked evaluation is exactly the nn.Sequential the architecture builds
    model = ng.to_model(graph_from_params([t[7] for t in w], [t[7] for t in b], siren_architecture()))
    coords = image_grid(5, 6)
    torch.testing.assert_close(siren_forward(w, b, coords)[7], model(coords), rtol=0, atol=1e-6)


def test_fits_digits_and_reconstructs(digits):
    x, _ = digits
    res = fit_sirens(x, steps=100, batch_size=16, workers=2, progress=False, record_steps=[0, 50, 100])
    assert res.weights[1].shape == (32, 32, 32) and res.psnr.shape == (32,)
    # measured: ~58-64 dB after 100 steps at the default lr; the initial SIREN is ~6 dB
    assert float(res.psnr.min()) > 40.0
    assert float(res.history[0].max()) < 15.0
    assert bool((res.history[50] < res.history[100]).all())
    torch.testing.assert_close(res.history[100], res.psnr)
    img = res.render(8, 8)
    assert float((img - x).abs().max()) < 0.02
    torch.testing.assert_close(psnr(img, x), res.psnr, rtol=1e-4, atol=1e-3)
    # a fitted INR is an ordinary model / neural graph that reproduces the image
    i = 5
    g = graph_from_params([w[i] for w in res.weights], [b[i] for b in res.biases], res.arch)
    with torch.no_grad():
        out = ng.to_model(g)(image_grid(8, 8)).reshape(8, 8)           # res.arch ends with the +0.5 offset
    assert float((out - x[i]).abs().max()) < 0.02


@needs_mnist
def test_fits_mnist(mnist):
    x, _ = mnist
    res = fit_sirens(x, steps=100, progress=False)
    # measured: mean ~33 dB, min ~27 dB after 100 steps (lr 1e-3, 28x28)
    assert float(res.psnr.mean()) > 28.0 and float(res.psnr.min()) > 22.0
    assert float((res.render(28, 28) - x).abs().mean()) < 0.02


@needs_mnist
@pytest.mark.parametrize("widths", [(2, 32, 32, 1), (2, 16, 24, 8, 1)])
def test_fast_path_matches_autograd_baseline(mnist, widths):
    x = mnist[0][:12]
    kw = dict(widths=widths, steps=15, lr=1e-3, seed=3, progress=False, record_steps=[0, 7, 15], workers=1)
    fast = fit_sirens(x, method="fast", **kw)
    slow = fit_sirens(x, method="autograd", **kw)
    for a, b in zip(fast.weights + fast.biases, slow.weights + slow.biases):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=2e-5)
    for k in (0, 7, 15):
        torch.testing.assert_close(fast.history[k], slow.history[k], rtol=1e-4, atol=1e-3)


def test_fast_path_matches_autograd_multichannel_and_depth_one(digits):
    x = digits[0][:6]
    rgb = torch.stack([x, x.flip(-1), x.transpose(1, 2)], dim=-1)      # [n, 8, 8, 3]
    for widths, imgs in (((2, 16, 3), rgb), ((2, 1), x)):
        kw = dict(widths=widths, steps=10, lr=1e-3, progress=False, workers=1)
        fast, slow = fit_sirens(imgs, method="fast", **kw), fit_sirens(imgs, method="autograd", **kw)
        for a, b in zip(fast.weights + fast.biases, slow.weights + slow.biases):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=2e-5)
        torch.testing.assert_close(fast.render(8, 8), render(slow.weights, slow.biases, 8, 8), atol=1e-4, rtol=0)


def test_deterministic_and_inrs_independent(digits):
    x = digits[0][:8]
    a = fit_sirens(x, steps=30, seed=1, batch_size=8, workers=1, progress=False)
    b = fit_sirens(x, steps=30, seed=1, batch_size=8, workers=1, progress=False)
    for s, t in zip(a.weights + a.biases, b.weights + b.biases):
        assert torch.equal(s, t)
    # other batch partitions / threads: same networks up to kernel rounding
    c = fit_sirens(x, steps=30, seed=1, batch_size=3, workers=2, progress=False)
    for s, t in zip(a.weights + a.biases, c.weights + c.biases):
        torch.testing.assert_close(s, t, rtol=1e-4, atol=1e-6)
    # no coupling between INRs: changing the other images leaves INR 0 unchanged
    y = torch.cat([x[:1], digits[0][20:27]])
    d = fit_sirens(y, steps=30, seed=1, batch_size=8, workers=1, progress=False)
    for s, t in zip(a.weights + a.biases, d.weights + d.biases):
        torch.testing.assert_close(s[0], t[0], rtol=0, atol=1e-6)
        assert not torch.allclose(s[1], t[1])
    e = fit_sirens(x, steps=30, seed=2, batch_size=8, workers=1, progress=False)
    assert not torch.allclose(a.weights[1], e.weights[1])


def test_derive_seed():
    seeds = {derive_seed(0, k) for k in range(100)} | {derive_seed(1, k) for k in range(100)}
    assert len(seeds) == 200 and derive_seed(5, 3) == derive_seed(5, 3)
    assert all(0 <= s < 2 ** 63 for s in seeds)


def test_fit_errors():
    x = torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match="2 input coordinates"):
        fit_sirens(x, widths=(3, 8, 1), progress=False)
    with pytest.raises(ValueError, match="1 channel"):
        fit_sirens(x, widths=(2, 8, 3), progress=False)
    with pytest.raises(ValueError, match="uint8"):
        fit_sirens((x * 255).to(torch.uint8), progress=False)
    with pytest.raises(ValueError, match="shape"):
        fit_sirens(torch.rand(4, 4), progress=False)
    with pytest.raises(ValueError, match="record_steps"):
        fit_sirens(x, steps=5, record_steps=[6], progress=False)
    with pytest.raises(ValueError, match="method"):
        fit_sirens(x, method="adam", progress=False)


def test_interrupt_stops_all_worker_threads_promptly(digits, monkeypatch):
    """An exception in one batch (here: Ctrl-C arriving in the progress hook) ends the whole threaded fit."""
    import threading
    import time

    import neuralgraph.inr.runner as runner

    x = digits[0].repeat(4, 1, 1)                       # 128 INRs -> 16 batches of 8
    calls = {"n": 0}

    class InterruptingBar:
        def update(self, k):
            calls["n"] += 1
            if calls["n"] == 5:
                raise KeyboardInterrupt

        def close(self):
            pass

    monkeypatch.setattr(runner, "_progress_bar", lambda total, enabled: InterruptingBar())
    threads_before = torch.get_num_threads()
    alive_before = set(threading.enumerate())
    t = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        fit_sirens(x, steps=2000, batch_size=8, workers=2, progress=True)
    assert time.perf_counter() - t < 5.0                # the full fit takes far longer
    assert set(threading.enumerate()) <= alive_before     # worker threads joined
    assert torch.get_num_threads() == threads_before
    with pytest.raises(ValueError, match="CPU"):
        fit_sirens(x.to("meta"), progress=False)


def test_diverging_fit_raises_instead_of_returning_nan(digits):
    with pytest.raises(FloatingPointError, match="non-finite"):
        fit_sirens(digits[0][:4], w0=1e30, steps=3, progress=False)
    with pytest.raises(FloatingPointError, match="non-finite"):
        fit_sirens(digits[0][:4], lr=1e30, steps=3, method="autograd", progress=False)


# ----------------------------------------------------------------------------
# the device path (vectorised torch kernel, run here on CPU) and early stopping
# ----------------------------------------------------------------------------

def _max_diff(a, b) -> float:
    return max(float((s - t).abs().max()) for s, t in zip(a.weights + a.biases, b.weights + b.biases))


@needs_mnist
@pytest.mark.parametrize("widths", [(2, 32, 32, 1), (2, 16, 24, 8, 1), (2, 1)])
def test_device_path_on_cpu_matches_the_fast_cpu_path(mnist, widths):
    """Same seed -> same networks and PSNR curve from the two independent hand-written kernels."""
    x = mnist[0][:12]
    kw = dict(widths=widths, steps=15, seed=3, progress=False, record_steps=[0, 7, 15], workers=1)
    fast = fit_sirens(x, method="fast", **kw)
    dev = fit_sirens(x, method="device", device="cpu", **kw)
    slow = fit_sirens(x, method="autograd", **kw)
    for a, b in zip(dev.weights + dev.biases, fast.weights + fast.biases):
        assert a.device.type == "cpu"
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-6)
    assert _max_diff(dev, slow) < 2e-5
    for k in (0, 7, 15):
        torch.testing.assert_close(dev.history[k], fast.history[k], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(dev.psnr, fast.psnr, rtol=1e-5, atol=1e-4)
    assert bool((dev.steps_taken == 15).all())


def test_device_path_multichannel_matches_autograd(digits):
    x = digits[0][:6]
    rgb = torch.stack([x, x.flip(-1), x.transpose(1, 2)], dim=-1)      # [n, 8, 8, 3]: no folded output scale
    kw = dict(widths=(2, 16, 3), steps=10, progress=False, workers=1)
    assert _max_diff(fit_sirens(rgb, method="device", batch_size=4, **kw),
                     fit_sirens(rgb, method="autograd", **kw)) < 2e-5


def test_early_stopping_freezes_each_inr_at_the_target(digits):
    """target_psnr: an INR stops at the first step whose PSNR reaches the target, the others go on."""
    x = digits[0][:16]
    kw = dict(steps=150, lr=1e-3, seed=4, progress=False, workers=1)
    es = fit_sirens(x, target_psnr=35.0, method="device", **kw)
    k = es.steps_taken
    assert k.dtype == torch.long and bool((k > 0).all()) and bool((k < 150).all())
    assert int(k.min()) < int(k.max())                  # measured: ~60..110 steps at lr 1e-3 on 8x8 digits
    assert bool((es.psnr >= 35.0).all())
    # the frozen parameters are those of a plain fit stopped after steps_taken[i] steps
    for i in (int(k.argmin()), int(k.argmax())):
        plain = fit_sirens(x, **{**kw, "steps": int(k[i])})
        for a, b in zip(es.weights + es.biases, plain.weights + plain.biases):
            torch.testing.assert_close(a[i], b[i], rtol=1e-4, atol=2e-6)
        # one step earlier it was still below the target
        before = fit_sirens(x, **{**kw, "steps": int(k[i]) - 1})
        assert float(before.psnr[i]) < 35.0 <= float(plain.psnr[i])
    # the threaded CPU path runs the same protocol
    fast = fit_sirens(x, target_psnr=35.0, method="fast", batch_size=5, **{**kw, "workers": 2})
    assert torch.equal(fast.steps_taken, k)
    torch.testing.assert_close(fast.psnr, es.psnr, rtol=1e-5, atol=1e-4)


def test_early_stopping_ends_when_every_inr_converged(digits):
    x = digits[0][:4]
    res = fit_sirens(x, steps=5000, target_psnr=30.0, method="device", progress=False, check_every=10,
                     record_steps=[4999])
    assert int(res.steps_taken.max()) < 300             # the loop left long before 5000 steps
    torch.testing.assert_close(res.history[4999], res.psnr)


def test_fit_sirens_to_signals_fits_1d_sines():
    """The self-supervised data of issue 11: 1 -> 32 -> 32 -> 1 SIRENs on a sin(b x), 2000 points of [-pi, pi)."""
    from neuralgraph.inr import fit_sirens_to_signals

    xs = torch.linspace(-torch.pi, torch.pi, 2001)[:-1]
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(6, generator=g) + 0.5, torch.rand(6, generator=g) * 2 + 0.5
    y = a[:, None] * torch.sin(b[:, None] * xs)                          # [6, 2000]
    kw = dict(steps=8, progress=False, workers=1)
    dev = fit_sirens_to_signals(xs[:, None], y, method="device", **kw)
    ref = fit_sirens_to_signals(xs[:, None], y, method="autograd", **kw)
    fast = fit_sirens_to_signals(xs[:, None], y, method="fast", **kw)
    assert _max_diff(dev, ref) < 1e-4 and _max_diff(dev, fast) < 1e-6
    res = fit_sirens_to_signals(xs[:, None], y[:, :, None], steps=300, progress=False)
    # measured: 48-58 dB after 300 steps
    assert float(res.psnr.min()) > 40.0
    w, bb = res.weights, res.biases
    out = siren_forward(w, bb, xs[:, None])[..., 0]
    assert float((out - y).abs().max()) < 0.05
    assert list(res.arch.widths) == [1, 32, 32, 1]


def test_device_settings_are_checked():
    from neuralgraph.inr import device_batch_size, fit_sirens_to_signals, resolve_device

    x = torch.rand(2, 4, 4)
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert device_batch_size(torch.device("cpu"), [2, 32, 32, 1], 784) >= 1
    with pytest.raises(ValueError, match="device"):
        fit_sirens(x, device="tpu", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            fit_sirens(x, device="cuda", progress=False)
    with pytest.raises(ValueError, match="target_psnr"):
        fit_sirens(x, target_psnr=float("nan"), progress=False)
    with pytest.raises(ValueError, match="autograd"):
        fit_sirens(x, target_psnr=30.0, method="autograd", progress=False)
    with pytest.raises(ValueError, match="check_every"):
        fit_sirens(x, method="device", check_every=0, progress=False)
    with pytest.raises(ValueError, match="coords"):
        fit_sirens_to_signals(torch.rand(10, 2), torch.rand(3, 10, 1), progress=False)   # widths[0] is 1
    with pytest.raises(ValueError, match="targets"):
        fit_sirens_to_signals(torch.rand(10, 1), torch.rand(10), progress=False)


def test_dwsnets_init_is_the_datasets_starting_point():
    """init="dwsnets": every sine layer U(+-sqrt(6/in)/w0) (the first one too) with zero bias, the last layer as
    torch.nn.Linear (weight and bias U(+-1/sqrt(in))); "siren" keeps U(+-1/in) on the first layer."""
    import math

    from neuralgraph.inr import siren_init

    g = torch.Generator().manual_seed(0)
    w, b = siren_init(2000, (2, 32, 32, 1), 30.0, g, init="dwsnets")
    bounds = [math.sqrt(6 / 2) / 30, math.sqrt(6 / 32) / 30, 1 / math.sqrt(32)]
    for wm, bound in zip(w, bounds):
        assert float(wm.abs().max()) <= bound and float(wm.abs().max()) > 0.95 * bound
    assert float(b[0].abs().max()) == 0.0 and float(b[1].abs().max()) == 0.0
    assert 0.9 / math.sqrt(32) < float(b[2].abs().max()) <= 1 / math.sqrt(32)
    w_s, _ = siren_init(2000, (2, 32, 32, 1), 30.0, torch.Generator().manual_seed(0))
    assert 0.49 < float(w_s[0].abs().max()) <= 0.5
    with pytest.raises(ValueError, match="init must be one of"):
        siren_init(2, (2, 4, 1), 30.0, init="xavier")


def test_fit_with_the_dwsnets_init_is_its_own_protocol(tmp_path):
    """The init changes the fit (and is recorded in the manifest), so a directory never mixes two inits."""
    from neuralgraph.inr import INRDataset, build_inr_splits

    kw = dict(n_val=20, n_test=20, steps=5, chunk_size=64, progress=False)
    build_inr_splits("digits", tmp_path / "d", init="dwsnets", **kw)
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["settings"]["init"] == "dwsnets"
    build_inr_splits("digits", tmp_path / "s", **kw)
    assert "init" not in json.loads((tmp_path / "s" / "manifest.json").read_text())["settings"]
    first = [INRDataset(tmp_path / name / "train.pt", normalize=False).weights[0] for name in ("d", "s")]
    assert float(first[0].std()) < 0.5 * float(first[1].std())
    with pytest.raises(ValueError, match="init"):
        build_inr_splits("digits", tmp_path / "s", init="dwsnets", **kw)
