"""Bad-input cases: model zoos (run by test_bad_input.py; see bad_input.py for the row format).

Zoo sampling and generation settings, zoo files, ZooDataset queries, StatNN and Kendall's tau.
"""
from __future__ import annotations

import torch

from bad_input import Case, Ctx, cli_case
from neuralgraph.augment import relative_noise_stacked

_DIGITS = dict(dataset="digits", image_size=8, n_train=64, n_test=50, n_train_eval=32, progress=False)


def _gen(ctx: Ctx, **kw):
    from neuralgraph.zoo import generate_zoo

    args = {"family": "mlp", "num_networks": 2, "epochs": 1, "hidden_choices": ((8,),), **_DIGITS, **kw}
    return generate_zoo(ctx.tmp / "z.pt", **args)


def _zoo(ctx: Ctx):
    from neuralgraph.zoo import ZooDataset

    return ZooDataset(_gen(ctx))


def _corrupt(ctx: Ctx):
    from neuralgraph.zoo import load_zoo_file

    path = _gen(ctx)
    obj = torch.load(path, weights_only=True)
    obj["groups"][0]["weights"][0][0, 0, 0, 0] += 1.0
    torch.save(obj, path)
    return load_zoo_file(path)


def _not_a_zoo(ctx: Ctx):
    from neuralgraph.zoo import load_zoo_file

    torch.save({"weights": []}, ctx.tmp / "x.pt")
    return load_zoo_file(ctx.tmp / "x.pt")


def _conv1d_arch():
    from neuralgraph.architecture import Architecture, LayerSpec
    from neuralgraph.zoo.train import check_trainable

    return check_trainable(Architecture((LayerSpec("conv1d", 1, 4, (3,), (1,), (0,), (1,)),)))


def _concat_taps():
    import neuralgraph as ng
    from neuralgraph.zoo import concat_batches, small_cnn_architecture
    from neuralgraph.zoo.specs import init_params, mlp_classifier_architecture

    a, b = small_cnn_architecture(), mlp_classifier_architecture(4, (3,))
    pa, pb = init_params(a, [{"seed": 0, "init": "he_normal", "init_std": 0.1}]), \
        init_params(b, [{"seed": 0, "init": "he_normal", "init_std": 0.1}])
    return concat_batches([ng.stacked_to_batch(pa["weights"], pa["biases"], a),
                           ng.stacked_to_batch(pb["weights"], pb["biases"], b)])


def _sz(**kw):
    from neuralgraph.zoo import sample_zoo

    return sample_zoo(**{"family": "small_cnn", "n": 4, **kw})


def _tau(p, t):
    from neuralgraph.zoo import kendall_tau

    return kendall_tau(p, t)


def _fit(**kwargs):
    from neuralgraph.zoo import fit_statnn
    return fit_statnn(torch.randn(4, 2).numpy(), torch.randn(4).numpy(), **kwargs)


def _feats(w, b):
    from neuralgraph.zoo import statnn_features

    return statnn_features(w, b)


CASES = [
    Case("zoo family unknown", lambda ctx: _sz(family="resnet"), ValueError, "zoo family"),
    Case("zoo size zero", lambda ctx: _sz(n=0), ValueError, "zoo size"),
    Case("wild park pool zero", lambda ctx: _sz(family="wild_park", num_architectures=0), ValueError,
         "num_architectures"),
    Case("mlp hidden empty", lambda ctx: _sz(family="mlp", hidden_choices=((),)), ValueError, "hidden_choices"),
    Case("zoo dataset unknown", lambda ctx: _gen(ctx, dataset="cifar10"), ValueError, "zoo dataset"),
    Case("zoo mnist without root", lambda ctx: _gen(ctx, dataset="mnist", image_size=14), ValueError, "root="),
    Case("zoo digits image size", lambda ctx: _gen(ctx, image_size=14), ValueError, "image_size must be 8"),
    Case("zoo mnist image size 13", lambda ctx: _gen(ctx, dataset="mnist", root=ctx.tmp, image_size=13),
         ValueError, "image_size must divide 28"),
    Case("zoo epochs zero", lambda ctx: _gen(ctx, epochs=0), ValueError, "epochs must be an integer"),
    Case("zoo checkpoint past epochs", lambda ctx: _gen(ctx, checkpoints=[0, 3]), ValueError, "checkpoints"),
    Case("zoo chunk size float", lambda ctx: _gen(ctx, chunk_size=2.5), ValueError, "chunk_size"),
    Case("zoo n_train below batch", lambda ctx: _gen(ctx, n_train=8), ValueError, "batch_size=32"),
    Case("zoo n_train zero", lambda ctx: _gen(ctx, n_train=0), ValueError, "n_train"),
    Case("zoo file missing", lambda ctx: __import__("neuralgraph.zoo", fromlist=["x"]).load_zoo_file(ctx.tmp / "no.pt"),
         FileNotFoundError, "zoo file not found"),
    Case("zoo file not a zoo", _not_a_zoo, ValueError, "not a zoo file"),
    Case("zoo file corrupted", _corrupt, ValueError, "checksum mismatch"),
    Case("zoo checkpoint epoch absent", lambda ctx: _zoo(ctx).targets(epoch=7), ValueError, "no checkpoint at epoch 7"),
    Case("zoo metric unknown", lambda ctx: _zoo(ctx).targets(metric="f1"), ValueError, "unknown metric"),
    Case("zoo split fractions sum", lambda ctx: _zoo(ctx).split(val=0.6, test=0.5), ValueError, "val + test"),
    Case("zoo split fraction negative", lambda ctx: _zoo(ctx).split(val=-0.1), ValueError, "val fraction"),
    cli_case("zoo generate: --out an existing directory", ["zoo", "generate", "--out", "{tmp}", "--family", "mlp",
                                                          "--dataset", "digits", "--num-networks", "2", "--epochs",
                                                          "1", "--hidden", "8", "--n-train", "64", "--n-test", "50",
                                                          "--n-train-eval", "32", "--no-progress"],
             "is a directory; a zoo is one file"),
    cli_case("zoo statnn: test fraction above 1", ["zoo", "statnn", "--zoo", "{tmp}/z.pt", "--test", "1.2"],
             "test fraction must be in [0, 1), got 1.2", setup=_gen),
    Case("zoo batch float indices", lambda ctx: _zoo(ctx).batch([0.5]), ValueError, "indices must be integers"),
    Case("zoo train conv1d", lambda ctx: _conv1d_arch(), ValueError, "layer 1 is conv1d"),
    Case("zoo concat different taps", lambda ctx: _concat_taps(), ValueError, "features per edge"),
    Case("kendall tau lengths", lambda ctx: _tau([1, 2, 3], [1, 2]), ValueError, "pred has 3 values, target 2"),
    Case("kendall tau one pair", lambda ctx: _tau([1], [1]), ValueError, "at least 2 finite pairs"),
    Case("kendall tau nan", lambda ctx: _tau([1, float("nan")], [1, 2]), ValueError, "at least 2 finite pairs"),
    Case("tau difference lengths", lambda ctx: __import__("neuralgraph.zoo", fromlist=["x"]).tau_difference(
         [1, 2, 3], [1, 2, 3], [1, 2]), ValueError, "have 3, 3 and 2 values"),
    Case("relative noise negative", lambda ctx: relative_noise_stacked([torch.zeros(2, 3)], noise=-0.1),
         ValueError, "need noise >= 0 and 0 <= dropout < 1, got -0.1 and 0.0"),
    Case("statnn unknown regressor", lambda ctx: _fit(regressor="forest"), ValueError,
         "unknown regressor 'forest'; choose one of gbt, mlp"),
    Case("statnn layer count", lambda ctx: _feats([torch.zeros(2, 3, 4)], []), ValueError, "one bias"),
    Case("statnn network count", lambda ctx: _feats([torch.zeros(2, 3, 4)], [torch.zeros(3, 3)]), ValueError,
         "stacks of 2 networks"),
]
