"""Bad-input cases: the adapt task and its target-domain corruption (run by test_bad_input.py; see bad_input.py).

``neuralgraph.data.corrupt`` (images, settings, seeds), ``neuralgraph.tasks.Adapt`` options and zoo loading,
``finetune_stacked`` / ``grouped_logits`` arguments.
"""
from __future__ import annotations

import torch

from bad_input import Case, Ctx, cli_case

_DIGITS = dict(dataset="digits", image_size=8, n_train=64, n_test=50, n_train_eval=32, progress=False)


def _corrupt(**kw):
    from neuralgraph.data.corrupt import corrupt

    images = kw.pop("images", torch.rand(2, 1, 8, 8))
    return corrupt(images, **kw)


def _zoo(ctx: Ctx, **kw):
    from neuralgraph.zoo import generate_zoo

    args = {"family": "mlp", "num_networks": 4, "epochs": 1, "hidden_choices": ((8,),), **_DIGITS, **kw}
    return generate_zoo(ctx.tmp / "z.pt", **args)


def _load(ctx: Ctx, **options):
    from neuralgraph.tasks import Adapt

    return Adapt(**{"n_images": 20, "n_val_images": 10, "n_test_images": 20, **options}).load_splits(
        _zoo(ctx), normalize=False)


def _mnist_zoo_without_root(ctx: Ctx):
    """A zoo file that says it was trained on MNIST, loaded without --task-arg root."""
    from neuralgraph.tasks import Adapt
    from neuralgraph.zoo.files import _checksums

    path = _zoo(ctx)
    obj = torch.load(path, weights_only=True)
    obj["meta"]["dataset"] = "mnist"
    obj["checksums"] = _checksums(obj)
    torch.save(obj, path)
    return Adapt().load_splits(path, normalize=False)


def _grouped(n_archs: int):
    from neuralgraph.tasks.adapt import grouped_logits
    from neuralgraph.zoo import mlp_classifier_architecture

    a = mlp_classifier_architecture(4, (3,))
    return grouped_logits([a] * n_archs, [torch.zeros(2, 3, 4), torch.zeros(2, 10, 3)],
                          [torch.zeros(2, 3), torch.zeros(2, 10)], torch.zeros(5, 4))


def _finetune(**kw):
    from neuralgraph.tasks.adapt import finetune_stacked
    from neuralgraph.zoo import mlp_classifier_architecture

    a = mlp_classifier_architecture(4, (3,))
    return finetune_stacked([a], [torch.zeros(1, 3, 4), torch.zeros(1, 10, 3)], [torch.zeros(1, 3), torch.zeros(1, 10)],
                            torch.zeros(5, 4), torch.zeros(5, dtype=torch.long), **kw)


CASES = [
    Case("corrupt images not 4-d", lambda ctx: _corrupt(images=torch.rand(8, 8)), ValueError, "images must be a float tensor [n, C, H, W]"),
    Case("corrupt images integer", lambda ctx: _corrupt(images=torch.zeros(1, 1, 8, 8, dtype=torch.long)), ValueError,
         "images must be a float tensor"),
    Case("corrupt contrast above 1", lambda ctx: _corrupt(contrast=1.5), ValueError, "contrast in [0, 1]"),
    Case("corrupt negative noise", lambda ctx: _corrupt(noise=-0.1), ValueError, "noise >= 0"),
    Case("corrupt rotate nan", lambda ctx: _corrupt(rotate=float("nan")), ValueError, "rotate must be a finite number"),
    Case("corrupt negative seed", lambda ctx: _corrupt(seed=-1), ValueError, "seed must be an integer >= 0"),
    Case("target data unknown setting", lambda ctx: __import__("neuralgraph.data.corrupt", fromlist=["x"])
         .load_target_data("digits", image_size=8, sharpen=1.0), ValueError, "unknown corruption settings ['sharpen']"),
    Case("adapt n_images zero", lambda ctx: __import__("neuralgraph.tasks", fromlist=["x"]).Adapt(n_images=0),
         ValueError, "n_images must be an integer >= 1"),
    Case("adapt min_acc one", lambda ctx: __import__("neuralgraph.tasks", fromlist=["x"]).Adapt(min_acc=1.0),
         ValueError, "min_acc must be in [0, 1)"),
    Case("adapt normalised", lambda ctx: __import__("neuralgraph.tasks", fromlist=["x"]).Adapt().load_splits(
        _zoo(ctx), normalize=True), ValueError, "--no-normalize"),
    Case("adapt zoo missing", lambda ctx: __import__("neuralgraph.tasks", fromlist=["x"]).Adapt().load_splits(
        ctx.tmp / "none.pt", normalize=False), FileNotFoundError, "adapt: zoo file not found"),
    Case("adapt too many images", lambda ctx: _load(ctx, n_images=5000), ValueError, "fewer than n_images + n_val_images"),
    Case("adapt no root for mnist zoo", _mnist_zoo_without_root, ValueError, "--task-arg root=DIR"),
    Case("adapt min_acc keeps too few", lambda ctx: _load(ctx, min_acc=0.99), ValueError, "lower --task-arg min_acc"),
    Case("grouped logits arch count", lambda ctx: _grouped(3), ValueError, "3 architectures for 2 networks"),
    Case("finetune zero steps", lambda ctx: _finetune(steps=0), ValueError, "steps must be an integer >= 1"),
    Case("finetune negative lr", lambda ctx: _finetune(lr=-1.0), ValueError, "lr must be > 0"),
    cli_case("adapt task option unknown", ["train", "--task", "adapt", "--data", "{tmp}/z.pt", "--out", "{tmp}/run",
                                           "--task-arg", "sharpen=1"], "sharpen"),
]
