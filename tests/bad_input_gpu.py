"""Bad-input cases: device fitting, signal fitting, early stopping and the training accelerators
(run by test_bad_input.py; see bad_input.py for the row format).

Every row fails the same way with or without a GPU (no row needs CUDA to be absent or present).
"""
from __future__ import annotations

import torch

from bad_input import Case, Ctx

IMAGES = torch.rand(3, 6, 6)
XS = torch.linspace(-3.0, 3.0, 50)[:, None]          # [P=50, 1]
SIGNALS = torch.sin(XS.T * torch.tensor([[1.0], [2.0]]))[..., None]   # [2, 50, 1]


def _fit(**kw):
    from neuralgraph.inr import fit_sirens

    return fit_sirens(IMAGES, progress=False, steps=2, **kw)


def _signals(coords=XS, targets=SIGNALS, **kw):
    from neuralgraph.inr import fit_sirens_to_signals

    return fit_sirens_to_signals(coords, targets, progress=False, steps=2, **kw)


def _fit_to_dataset(ctx: Ctx, **kw):
    from neuralgraph.inr import fit_to_dataset

    return fit_to_dataset(IMAGES, torch.tensor([0, 1, 2]), ctx.tmp / "train.pt", num_classes=3, steps=2,
                          progress=False, **kw)


def _splits(ctx: Ctx, **kw):
    from neuralgraph.inr import build_inr_splits

    return build_inr_splits("digits", ctx.tmp / "inrs", n_train=10, n_val=10, n_test=10, steps=2, progress=False,
                            **kw)


def _amp(device):
    from neuralgraph.train.accel import amp_autocast

    with amp_autocast(device):
        pass


def _probe_on_other_device():
    from torch import nn

    import neuralgraph as ng
    from dws_equiv.ng import ProbeFeatures

    graph = ng.to_graph(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))).to("meta")
    return ProbeFeatures(n_probes=2, max_in=4)(graph)


CASES: list[Case] = [
    Case("fit_sirens: device='tpu'", lambda ctx: _fit(device="tpu"), ValueError, "device must be"),
    Case("fit_sirens: device=cuda:99", lambda ctx: _fit(device="cuda:99"), ValueError, "cuda:99"),
    Case("fit_sirens: device=3.5", lambda ctx: _fit(device=3.5), ValueError, "device must be"),
    Case("fit_sirens: images on meta", lambda ctx: fit_sirens_meta(), ValueError, "images are on meta"),
    Case("fit_sirens: method='gpu'", lambda ctx: _fit(method="gpu"), ValueError, "method must be"),
    Case("fit_sirens: target_psnr=nan", lambda ctx: _fit(target_psnr=float("nan")), ValueError, "target_psnr"),
    Case("fit_sirens: target_psnr='40'", lambda ctx: _fit(target_psnr="40"), ValueError, "target_psnr"),
    Case("fit_sirens: target_psnr=True", lambda ctx: _fit(target_psnr=True), ValueError, "target_psnr"),
    Case("fit_sirens: target_psnr with autograd", lambda ctx: _fit(target_psnr=30.0, method="autograd"),
         ValueError, "autograd"),
    Case("fit_sirens: check_every=0", lambda ctx: _fit(method="device", check_every=0), ValueError, "check_every"),
    Case("fit_sirens: device batch_size=0", lambda ctx: _fit(method="device", batch_size=0), ValueError,
         "batch_size"),
    Case("fit_sirens_to_signals: coords 1-D", lambda ctx: _signals(coords=XS[:, 0]), ValueError, "coords"),
    Case("fit_sirens_to_signals: targets 1-D", lambda ctx: _signals(targets=SIGNALS[0, :, 0]), ValueError,
         "targets"),
    Case("fit_sirens_to_signals: integer targets", lambda ctx: _signals(targets=SIGNALS.long()), ValueError,
         "float tensor"),
    Case("fit_sirens_to_signals: P mismatch", lambda ctx: _signals(targets=SIGNALS[:, :40]), ValueError,
         "do not match widths"),
    Case("fit_sirens_to_signals: 2-D coords for a 1-input SIREN", lambda ctx: _signals(coords=torch.rand(50, 2)),
         ValueError, "coords [P, 1]"),
    Case("fit_sirens_to_signals: NaN targets", lambda ctx: _signals(targets=SIGNALS * float("nan")), ValueError,
         "NaN"),
    Case("fit_sirens_to_signals: no signals", lambda ctx: _signals(targets=SIGNALS[:0]), ValueError,
         "no signals"),
    Case("fit_to_dataset: device='gpu'", lambda ctx: _fit_to_dataset(ctx, device="gpu"), ValueError, "train.pt"),
    Case("fit_to_dataset: target_psnr=inf", lambda ctx: _fit_to_dataset(ctx, target_psnr=float("inf")), ValueError,
         "target_psnr"),
    Case("fit_to_dataset: device_batch_size=0", lambda ctx: _fit_to_dataset(ctx, device_batch_size=0), ValueError,
         "device_batch_size"),
    Case("build_inr_splits: device='gpu'", lambda ctx: _splits(ctx, device="gpu"), ValueError, "device must be"),
    Case("build_inr_splits: target_psnr='high'", lambda ctx: _splits(ctx, target_psnr="high"), ValueError,
         "target_psnr"),
    Case("amp_autocast on meta", lambda ctx: _amp("meta"), ValueError, "--amp"),
    Case("probe features: graph on another device", lambda ctx: _probe_on_other_device(), ValueError, "batch.to"),
]


def fit_sirens_meta():
    from neuralgraph.inr import fit_sirens

    return fit_sirens(IMAGES.to("meta"), progress=False)
