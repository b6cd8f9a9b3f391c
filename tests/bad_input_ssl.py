"""Bad-input cases: self-supervised INR embeddings (run by test_bad_input.py; see bad_input.py for the row format).

The ``ssl`` task's options, data without probe targets, batches that are not two views per INR, and the
sine-wave INR builder (:mod:`neuralgraph.inr.sines`).
"""
from __future__ import annotations

import torch

from bad_input import Case, Ctx, cli_case


def _task(**kw):
    from neuralgraph.tasks.ssl import Contrastive

    return Contrastive(**kw)


def _splits(ctx: Ctx, **meta):
    """The shared digit splits (no targets), with ``meta`` entries set on every split."""
    from neuralgraph.train import load_splits

    splits = load_splits(ctx.data)
    for d in splits.values():
        d.meta = {**d.meta, **{k: (v(len(d)) if callable(v) else v) for k, v in meta.items()}}
    return splits


def _setup(ctx: Ctx, **meta):
    return _task().setup(_splits(ctx, **meta))


def _not_views(ctx: Ctx):
    from neuralgraph.train import load_splits

    d = load_splits(ctx.data)["train"]
    return _task().loss(torch.randn(4, 16), d.batch(torch.arange(4)))


def _batch_before_setup(ctx: Ctx):
    from neuralgraph.train import load_splits

    return _task().train_batch(load_splits(ctx.data)["train"], torch.arange(2), None, None)


def _build(ctx: Ctx, **kw):
    from neuralgraph.inr.sines import build_sine_splits

    args = {"n_train": 2, "n_val": 1, "n_test": 1, "steps": 2, "progress": False, **kw}
    return build_sine_splits(ctx.tmp / "sines", **args)


def _rebuild_other(ctx: Ctx):
    _build(ctx)
    return _build(ctx, steps=3)


def _build_into_digits(ctx: Ctx):
    from neuralgraph.inr.sines import build_sine_splits

    return build_sine_splits(ctx.copy_data(), 2, 1, 1, steps=2, progress=False)


def _other_targets(ctx: Ctx):
    splits = _splits(ctx, targets=lambda n: torch.zeros(n, 2))
    splits["val"].meta["targets"] = torch.zeros(len(splits["val"]), 3)
    return _task().setup(splits)


def _corrupt_targets(ctx: Ctx):
    from neuralgraph.io import tensor_sha256

    def meta(n):
        return torch.rand(n, 2)
    splits = _splits(ctx, targets=meta)
    for d in splits.values():
        d.meta["targets_sha256"] = tensor_sha256(d.meta["targets"])
    splits["test"].meta["targets"] = splits["test"].meta["targets"] + 1
    return _task().setup(splits)


def _ssl_run_and_split_without_targets(ctx: Ctx) -> None:
    """Setup: an ssl run on tiny sine INRs ({tmp}/run) and a sine split without its targets ({tmp}/plain.pt)."""
    from bad_input import run_cli
    from neuralgraph.inr.files import _checksums

    _build(ctx, n_train=4, n_val=2, n_test=2)
    run_cli(["train", "--task", "ssl", "--data", str(ctx.tmp / "sines"), "--out", str(ctx.tmp / "run"), "--model",
             "mlp", "--epochs", "1", "--batch-size", "2", "--quiet", "--threads", "1"])
    obj = torch.load(ctx.tmp / "sines" / "test.pt", weights_only=True)
    obj["meta"] = {k: v for k, v in obj["meta"].items() if k not in ("targets", "targets_sha256")}
    obj["checksums"] = _checksums(obj)
    torch.save(obj, ctx.tmp / "plain.pt")


CASES = [
    Case("ssl temperature 0", lambda ctx: _task(temperature=0.0), ValueError, "ssl: temperature"),
    Case("ssl temperature negative", lambda ctx: _task(temperature=-0.1), ValueError, "ssl: temperature"),
    Case("ssl temperature nan", lambda ctx: _task(temperature=float("nan")), ValueError, "ssl: temperature"),
    Case("ssl out_dim 0", lambda ctx: _task(out_dim=0), ValueError, "ssl: out_dim"),
    Case("ssl out_dim float", lambda ctx: _task(out_dim=1.5), ValueError, "ssl: out_dim"),
    Case("ssl out_dim bool", lambda ctx: _task(out_dim=True), ValueError, "ssl: out_dim"),
    Case("ssl mask 1", lambda ctx: _task(mask=1.0), ValueError, "ssl: mask"),
    Case("ssl mask negative", lambda ctx: _task(mask=-0.1), ValueError, "ssl: mask"),
    Case("ssl noise negative", lambda ctx: _task(noise=-0.2), ValueError, "ssl: noise"),
    Case("ssl noise inf", lambda ctx: _task(noise=float("inf")), ValueError, "ssl: noise"),
    Case("ssl clean_view not a bool", lambda ctx: _task(clean_view="yes"), ValueError, "ssl: clean_view"),
    Case("ssl data without targets", lambda ctx: _setup(ctx), ValueError, "has no meta['targets']"),
    Case("ssl targets 1-d", lambda ctx: _setup(ctx, targets=lambda n: torch.zeros(n)), ValueError,
         "meta['targets'] must be a float tensor"),
    Case("ssl targets wrong length", lambda ctx: _setup(ctx, targets=lambda n: torch.zeros(n + 1, 2)), ValueError,
         "meta['targets'] must be a float tensor"),
    Case("ssl targets integer", lambda ctx: _setup(ctx, targets=lambda n: torch.zeros(n, 2, dtype=torch.long)),
         ValueError, "meta['targets'] must be a float tensor"),
    Case("ssl targets nan", lambda ctx: _setup(ctx, targets=lambda n: torch.full((n, 2), float("nan"))),
         ValueError, "NaN or inf"),
    Case("ssl targets checksum", _corrupt_targets, ValueError, "targets_sha256"),
    Case("ssl splits with other targets", _other_targets, ValueError, "different targets"),
    Case("ssl batch not two views", _not_views, ValueError, "not two views per INR"),
    Case("ssl batch before setup", _batch_before_setup, RuntimeError, "setup(splits)"),
    cli_case("ssl evaluate: a split without targets", ["evaluate", "--run", "{tmp}/run", "--data", "{tmp}/plain.pt"],
             "plain.pt has no meta['targets']", setup=_ssl_run_and_split_without_targets),
    Case("info_nce odd rows", lambda ctx: __import__("neuralgraph.tasks.ssl", fromlist=["x"]).info_nce(
        torch.randn(3, 4), 0.1), ValueError, "two views per INR"),
    Case("sines n_train 0", lambda ctx: _build(ctx, n_train=0), ValueError, "n_train"),
    Case("sines steps 0", lambda ctx: _build(ctx, steps=0), ValueError, "steps"),
    Case("sines points 1", lambda ctx: _build(ctx, points=1), ValueError, "points"),
    Case("sines scale 0", lambda ctx: _build(ctx, scale=0.0), ValueError, "scale"),
    Case("sines a_range reversed", lambda ctx: _build(ctx, a_range=(10, 0)), ValueError, "a_range"),
    Case("sines b_range not a pair", lambda ctx: _build(ctx, b_range=5), ValueError, "b_range"),
    Case("sines seed float", lambda ctx: _build(ctx, seed=1.5), ValueError, "seed"),
    Case("sines rerun with other settings", _rebuild_other, ValueError, "steps 2 there, 3 now"),
    Case("sines into an INR directory of another kind", _build_into_digits, ValueError, "files of another kind"),
    Case("sine_signals coefficients shape", lambda ctx: __import__("neuralgraph.inr.sines", fromlist=["x"])
         .sine_signals(torch.zeros(3), torch.zeros(5)), ValueError, "[n, 2]"),
]
