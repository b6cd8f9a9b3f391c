"""Bad-input cases: interop, transforms, importers, inference (run by test_bad_input.py; see bad_input.py)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

import neuralgraph as ng
from neuralgraph.interop import from_state_dict, rename_state_dict
from bad_input import Case, Ctx, cli_case, overwrite_tensor_bytes


def _json(ctx: Ctx, obj, name="splits.json"):
    p = ctx.tmp / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def _import(ctx: Ctx, obj, **kw):
    from neuralgraph.importers import import_inr_splits

    return import_inr_splits(_json(ctx, obj), ctx.tmp / "out", progress=False, **kw)


def _one_inr(ctx: Ctx, sd=None) -> str:
    p = ctx.tmp / "a.pth"
    torch.save(nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1)).state_dict() if sd is None else sd, p)
    return str(p)


def _split(path: str, n=1):
    return {"path": [path] * n, "label": [0] * n}


def _three(path: str, label: int = 0):
    return {s: {"path": [path], "label": [label]} for s in ("train", "val", "test")}


def _import_into_fitted(ctx: Ctx):
    """An import into a directory holding fitted digit INRs (without overwrite)."""
    from neuralgraph.importers import import_inr_splits

    return import_inr_splits(_json(ctx, _three(_one_inr(ctx))), ctx.copy_data(), progress=False)


def _failing_overwrite(ctx: Ctx):
    """A good import, then an import with overwrite whose *last* split fails: the first must stay whole."""
    _import(ctx, _three(_one_inr(ctx)))
    before = {p.name: p.read_bytes() for p in sorted((ctx.tmp / "out").iterdir()) if p.is_file()}
    bad = {**_three(_one_inr(ctx)), "test": {"path": [_one_inr(ctx)], "label": [12]}}
    try:
        _import(ctx, bad, overwrite=True)
    finally:
        after = {p.name: p.read_bytes() for p in sorted((ctx.tmp / "out").iterdir()) if p.is_file()}
        if after != before:
            raise AssertionError(f"the failed import changed {sorted(k for k in after if after[k] != before.get(k))}")


def _export(ctx: Ctx, data, existing: bool = False, **kw):
    from neuralgraph.exporters import export_inr_splits

    if existing:
        (ctx.tmp / "out").mkdir()
        (ctx.tmp / "out" / "x.txt").write_text("x")
    return export_inr_splits(data, ctx.tmp / "out", progress=False, **kw)


def _relu_splits(ctx: Ctx):
    """Split files of ReLU MLPs (not SIRENs)."""
    from neuralgraph.inr import save_inr_dataset

    d = ctx.tmp / "relu"
    d.mkdir()
    arch = ng.mlp_architecture([2, 4, 1], "relu")
    for s in ("train", "val", "test"):
        save_inr_dataset(d / f"{s}.pt", [torch.zeros(2, 4, 2), torch.zeros(2, 1, 4)], [torch.zeros(2, 4),
                                                                                     torch.zeros(2, 1)],
                         torch.zeros(2, dtype=torch.long), arch, num_classes=10)
    return d


def _damaged_saved_graph(ctx: Ctx):
    g = ng.to_graph(nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 1)))
    ng.save(g, ctx.tmp / "g.pt")
    return ng.load(overwrite_tensor_bytes(ctx.tmp / "g.pt"))


def _run_and_zoo(ctx: Ctx) -> None:
    """Setup: a finished classify run in {tmp}/run and a zoo file {tmp}/z.pt."""
    from bad_input_cli import a_finished_mlp_run
    from bad_input_zoo import _gen

    a_finished_mlp_run(ctx)
    _gen(ctx)


def _stats(ctx: Ctx):
    """A statistics file of their layout for INRs of widths [2, 4, 1] whose values belong to other INRs."""
    p = ctx.tmp / "stats.pth"
    torch.save({"weights": {"mean": [torch.full((2, 4, 1), 7.0), torch.zeros(4, 1, 1)],
                            "std": [torch.ones(2, 4, 1), torch.ones(4, 1, 1)]},
                "biases": {"mean": [torch.zeros(4, 1), torch.zeros(1, 1)],
                           "std": [torch.ones(4, 1), torch.ones(1, 1)]}},
               p)
    return p


SINE = Path(__file__).parent / "data" / "peer_inrs" / "sines" / "ssl-inrs" / "model_0.pth"
W2 = [torch.zeros(2, 4, 2), torch.zeros(2, 1, 4)]
B2 = [torch.zeros(2, 4), torch.zeros(2, 1)]
ARCH2 = ng.mlp_architecture([2, 4, 1], "sine")
W = [torch.zeros(2, 4, 3), torch.zeros(2, 1, 4)]
B = [torch.zeros(2, 4), torch.zeros(2, 1)]
ARCH = ng.mlp_architecture([3, 4, 1])

CASES: list[Case] = [
    # from_weights_biases
    Case("layout unknown", lambda ctx: ng.from_weights_biases(W, B, layout="keras"), ValueError, "unknown layout 'keras'"),
    Case("layout dwsnets without feature dim", lambda ctx: ng.from_weights_biases(W, B, layout="dwsnets"),
         ValueError, "dwsnets layout expects weight [B, in, out, 1]"),
    Case("layout nfn with 3 channels", lambda ctx: ng.from_weights_biases(
        [torch.zeros(2, 3, 4, 3)], [torch.zeros(2, 3, 4)], layout="nfn"), ValueError, "3 channels"),
    Case("weights not a list", lambda ctx: ng.from_weights_biases(W[0], B), ValueError, "weights must be a non-empty list"),
    Case("weights and biases of other B", lambda ctx: ng.from_weights_biases(W, [torch.zeros(3, 4), torch.zeros(2, 1)]),
         ValueError, "number of networks B"),
    Case("fewer biases than weights", lambda ctx: ng.from_weights_biases(W, B[:1]), ValueError, "2 weight and 1 bias"),
    Case("layers do not chain", lambda ctx: ng.from_weights_biases([W[0], torch.zeros(2, 1, 5)], B,
                                                                    activation="relu"), ValueError,
         "layer 1: weight has 5 inputs"),
    Case("no activation and no arch", lambda ctx: ng.from_weights_biases(W, B), ValueError,
         "from_weights_biases: pass activation= (e.g. 'relu', or 'sine' with w0= for SIRENs) or arch="),
    Case("sine without w0", lambda ctx: ng.from_weights_biases(W, B, activation="sine"), ValueError,
         "activation='sine' needs w0="),
    Case("arch and activation both", lambda ctx: ng.from_weights_biases(W, B, arch=ARCH, activation="relu"),
         ValueError, "pass either arch= or activation= / w0=, not both"),
    Case("nfn conv weights without arch", lambda ctx: ng.from_weights_biases(
        [torch.zeros(2, 1, 4, 1, 3, 3), torch.zeros(2, 1, 2, 4)], [torch.zeros(2, 1, 4), torch.zeros(2, 1, 2)],
        layout="nfn", activation="relu"), ValueError, "layer 0: weight of shape [2, 4, 1, 3, 3] is not a Linear "
                                                      "layer's; pass arch="),
    Case("to_weights_biases: dwsnets layout of a CNN", lambda ctx: ng.to_weights_biases(ng.to_graph(nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))), "dwsnets"), ValueError,
        "layer 0 is a conv2d; the dwsnets layout holds MLPs only"),
    Case("to_weights_biases: a normalised batch", lambda ctx: ng.to_weights_biases(
        __import__("neuralgraph.inr").inr.INRDataset(ctx.data / "train.pt", normalize=True).batch([0]), "torch"),
        ValueError, "the batch holds standardised parameters"),
    Case("to_weights_biases: unknown layout", lambda ctx: ng.to_weights_biases(ng.stacked_to_batch(W, B, ARCH),
                                                                              "keras"), ValueError,
         "unknown layout 'keras'"),
    Case("to_weights_biases: bias-free layer", lambda ctx: ng.to_weights_biases(ng.to_graph(nn.Sequential(
        nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 1))), "nfn"), ValueError, "layer 0 has no bias"),
    Case("arch not an Architecture", lambda ctx: ng.from_weights_biases(W, B, arch="mlp"), ValueError,
         "arch must be an Architecture"),
    # rename_state_dict / from_state_dict
    Case("by order: shape mismatch", lambda ctx: rename_state_dict(
        {"seq.0.weight": torch.zeros(4, 2), "seq.0.bias": torch.zeros(4), "seq.1.weight": torch.zeros(1, 4),
         "seq.1.bias": torch.zeros(1)}, ARCH), ValueError, "tensor 0 ('seq.0.weight') has shape [4, 2]"),
    Case("by order: too few tensors", lambda ctx: rename_state_dict({"w": torch.zeros(4, 3)}, ARCH),
         ValueError, "state dict has 1 tensors"),
    Case("by order: not a mapping", lambda ctx: rename_state_dict([torch.zeros(4, 3)], ARCH), ValueError,
         "state_dict must be a mapping"),
    Case("by order: value not a tensor", lambda ctx: from_state_dict({"a": 1.0}, ARCH), ValueError,
         "state_dict['a'] is a float"),
    Case("by order: key not a name", lambda ctx: rename_state_dict({0: torch.zeros(4, 3)}, ARCH), ValueError,
         "state_dict key 0 is a int, not a name"),
    # batch_models
    Case("batch_models: empty", lambda ctx: ng.batch_models([]), ValueError, "non-empty list"),
    Case("batch_models: not a module", lambda ctx: ng.batch_models([nn.Linear(2, 2), "x"]), ValueError,
         "models[1] is a str"),
    Case("batch_models: unsupported module", lambda ctx: ng.batch_models([nn.Sequential(nn.LSTM(2, 2))]),
         ValueError, "models[0]"),
    # transforms
    Case("WeightNoise negative std", lambda ctx: __import__("neuralgraph.transforms").transforms.WeightNoise(-1),
         ValueError, "std must be a finite number >= 0"),
    Case("WeightDropout p=1", lambda ctx: __import__("neuralgraph.transforms").transforms.WeightDropout(1.0),
         ValueError, "p must be in [0, 1)"),
    Case("PermuteHidden bad generator", lambda ctx: __import__("neuralgraph.transforms").transforms.PermuteHidden(5),
         ValueError, "generator must be a torch.Generator"),
    Case("WeightNoise on a tensor", lambda ctx: __import__("neuralgraph.transforms").transforms.WeightNoise(0.1)(
        torch.zeros(3)), ValueError, "transforms a neural graph"),
    # INRDataset stats= / transform= / indexing
    Case("INRDataset stats of other layers", lambda ctx: __import__("neuralgraph.inr").inr.INRDataset(
        ctx.data / "train.pt", stats={k: torch.zeros(2) for k in ("weight_mean", "weight_std", "bias_mean", "bias_std")}),
        ValueError, "(stats=): stats['weight_mean'] must be 3 finite values"),
    Case("INRDataset transform not callable", lambda ctx: __import__("neuralgraph.inr").inr.INRDataset(
        ctx.data / "train.pt", transform=3), ValueError, "transform must be callable"),
    Case("INRDataset index bool", lambda ctx: __import__("neuralgraph.inr").inr.INRDataset(ctx.data / "train.pt")[True],
         ValueError, "dataset[i] takes one integer index"),
    # importer
    Case("import: splits file missing", lambda ctx: __import__("neuralgraph.importers").importers.import_inr_splits(
        ctx.tmp / "none.json", ctx.tmp / "o"), FileNotFoundError, "splits file not found"),
    Case("import: not JSON", lambda ctx: _import(ctx, "{oops"), ValueError, "not a JSON file"),
    Case("import: no train split", lambda ctx: _import(ctx, {"test": {}}), ValueError, "expected {'train'"),
    Case("import: paths and labels differ", lambda ctx: _import(ctx, {"train": {"path": ["a"], "label": []}}),
         ValueError, "1 paths but 0 labels"),
    Case("import: no val split", lambda ctx: _import(ctx, {"train": _split("a"), "test": _split("a")}), ValueError,
         "no 'val' split; pass val_from_train"),
    Case("import: INR file missing", lambda ctx: _import(
        ctx, {s: _split("missing.pth") for s in ("train", "val", "test")}), FileNotFoundError,
         "INR file 'missing.pth' not found"),
    Case("import: not a Linear state dict", lambda ctx: _import(ctx, {s: _split(_one_inr(
        ctx, {"w.weight": torch.zeros(2, 2, 3), "w.bias": torch.zeros(2)})) for s in ("train", "val", "test")}),
        ValueError, "layer 0 is not a Linear layer"),
    Case("import: label outside num_classes", lambda ctx: _import(ctx, {s: {"path": [_one_inr(ctx)], "label": [12]}
                                                                       for s in ("train", "val", "test")}),
         ValueError, "label 12 at index 0 is outside [0, 10)"),
    Case("import: into a fitted dataset without overwrite", _import_into_fitted, ValueError,
         "holds INRs fitted with other settings (source 'digits' there, 'dwsnets-import' now"),
    Case("import: a failing overwrite keeps the old import", _failing_overwrite, ValueError,
         "label 12 at index 0 is outside [0, 10)"),
    Case("import: a label that is not a number", lambda ctx: _import(ctx, {**_three(_one_inr(ctx)), "val": {
        "path": [_one_inr(ctx)], "label": ["five"]}}), ValueError,
        "split 'val' label 'five' at index 0 is not an integer (a number, or a numeric string such as \"5\""),
    Case("import: a bool label", lambda ctx: _import(ctx, {**_three(_one_inr(ctx)), "test": {
        "path": [_one_inr(ctx)], "label": [True]}}), ValueError,
        "split 'test' label True at index 0 is not an integer"),
    Case("import: splits of both layouts", lambda ctx: _import(ctx, {**_three(_one_inr(ctx)), "test": [_one_inr(ctx)]}),
         ValueError, "all of one kind; got {'train': 'labelled', 'val': 'labelled', 'test': 'paths'}"),
    Case("import: sine INR file without coef", lambda ctx: _import(ctx, {s: [_one_inr(ctx)] for s in
                                                                          ("train", "val", "test")}),
         ValueError, "a.pth: a sine INR file (splits JSON of paths, DWSNets' experiments/ssl) needs 'coef'"),
    Case("import: num_classes for sine INRs", lambda ctx: _import(ctx, {s: [_one_inr(ctx)] for s in
                                                                         ("train", "val", "test")}, num_classes=10),
         ValueError, "sine INRs (a splits JSON of paths) have no classes; num_classes=10 does not apply"),
    Case("import: statistics of other INRs", lambda ctx: _import(ctx, _three(_one_inr(ctx)), statistics=_stats(ctx)),
         ValueError, "stats.pth does not belong to these splits: weights.mean[0] entry"),
    Case("import: a file that would run code", lambda ctx: _import(ctx, _three(_one_inr(ctx, {
        "0.weight": torch.zeros(4, 2), "0.bias": torch.zeros(4), "extra": nn.ReLU()}))),
        ValueError, "a.pth: not a readable state dict (UnpicklingError: WeightsUnpickler error: Unsupported global: "
                    "GLOBAL torch.nn.modules.activation.ReLU"),
    Case("import: to_coords of sine INRs", lambda ctx: _import(ctx, {s: [str(SINE)] for s in ("train", "val", "test")},
                                                               to_coords="rc"), ValueError,
         "to_coords='rc' converts image INRs (2 inputs); these INRs have 1 input(s)"),
    Case("import: unknown coordinate convention", lambda ctx: _import(ctx, _three(_one_inr(ctx)), coords="yx"),
         ValueError, "coords='yx': choose 'xy'"),
    Case("Reorder: not a permutation", lambda ctx: ng.Reorder((0, 0)), ValueError,
         "Reorder order must be a permutation of 0 .. d-1 (e.g. (1, 0)), got (0, 0)"),
    Case("Reorder: after a layer", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 2), ng.Reorder((1, 0)),
                                                                         nn.Linear(2, 1))), ValueError,
         "layer 1: Reorder after a layer is not supported"),
    Case("Reorder: other width than the first layer", lambda ctx: ng.to_graph(nn.Sequential(
        ng.Reorder((1, 0, 2)), nn.Linear(2, 1))), ValueError, "Reorder(1, 0, 2) reorders 3 inputs but the first layer "
                                                              "has 2"),
    Case("Reorder: before a convolution", lambda ctx: ng.to_graph(nn.Sequential(
        ng.Reorder((1, 0)), nn.Conv1d(2, 1, 3))), ValueError, "a Reorder before a conv1d layer is not supported"),
    Case("coordinate_convention: not an image INR", lambda ctx: __import__("neuralgraph.inr.coords").inr.coords
         .coordinate_convention(ng.mlp_architecture([3, 4, 1])), ValueError,
         "coordinate_convention: a coordinate convention belongs to image INRs (a Linear first layer of 2 inputs)"),
    Case("convert_coordinates: unknown convention", lambda ctx: __import__("neuralgraph.inr.coords").inr.coords
         .convert_coordinates(W2, B2, ARCH2, "yx"), ValueError, "unknown coordinate convention 'yx'"),
    cli_case("cli import-inrs: a label that is not a number", ["import-inrs", "--splits", "{tmp}/splits.json",
                                                               "--out", "{tmp}/o", "--quiet"],
             "label 'five' at index 0 is not an integer",
             setup=lambda ctx: _json(ctx, {**_three(_one_inr(ctx)), "train": {"path": [_one_inr(ctx)],
                                                                             "label": ["five"]}})),
    Case("export: into a non-empty directory", lambda ctx: _export(ctx, ctx.data, existing=True), FileExistsError,
         "exists and is not empty; pass overwrite=True (`neuralgraph export-inrs --overwrite`)"),
    Case("export: unknown layout", lambda ctx: _export(ctx, ctx.data, layout="nfn"), ValueError,
         "unknown layout 'nfn'; export writes 'dwsnets'"),
    Case("export: networks their INR cannot express", lambda ctx: _export(ctx, _relu_splits(ctx)), ValueError,
         "train.pt: layer 1 is a linear with ['relu'] after it; DWSNets' INR is Linear layers with biases, sin(w0 x) "
         "between them"),
    cli_case("cli export-inrs: into a non-empty directory", ["export-inrs", "--data", "{data}", "--out", "{tmp}",
                                                             "--quiet"], "exists and is not empty",
             setup=lambda ctx: (ctx.tmp / "x.txt").write_text("x")),
    cli_case("cli import-inrs: into a fitted dataset", ["import-inrs", "--splits", "{tmp}/splits.json", "--out",
                                                       "{tmp}/data_copy"], "neuralgraph import-inrs --overwrite",
             setup=lambda ctx: (_json(ctx, _three(_one_inr(ctx))), ctx.copy_data())),
    # ng.save / ng.load
    Case("ng.load: a saved graph with a weight overwritten", _damaged_saved_graph, ValueError,
         "g.pt: checksum mismatch in object/"),
    # inference
    Case("predict: run not found", lambda ctx: ng.predict(ctx.tmp / "nope", ctx.data), FileNotFoundError,
         "run not found"),
    Case("predict: directory without best.pt", lambda ctx: ng.predict(ctx.tmp, ctx.data), FileNotFoundError,
         "holds no best.pt"),
    cli_case("cli import-inrs: missing splits", ["import-inrs", "--splits", "{tmp}/no.json", "--out", "{tmp}/o"],
             "splits file not found"),
    cli_case("cli predict: run not found", ["predict", "--run", "{tmp}/nope", "--data", "{data}"], "run not found"),
    cli_case("cli embed: bad layer", ["embed", "--run", "{tmp}", "--data", "{data}", "--out", "{tmp}/e.pt",
                                      "--layer", "middle"], "invalid choice: 'middle'"),
    cli_case("cli predict: classify run on a zoo file", ["predict", "--run", "{tmp}/run", "--data", "{tmp}/z.pt"],
             "z.pt: a model-zoo file (neuralgraph zoo generate), not an INR split", setup=_run_and_zoo),
    cli_case("cli evaluate: classify run on a zoo file", ["evaluate", "--run", "{tmp}/run", "--data", "{tmp}/z.pt"],
             "z.pt: a model-zoo file (neuralgraph zoo generate), not an INR split", setup=_run_and_zoo),
    cli_case("cli evaluate: no best.pt", ["evaluate", "--run", "{tmp}", "--data", "{data}"], "holds no best.pt"),
]

CASES += [
    cli_case("cli extend: not a run", ["extend", "--run", "{tmp}", "--epochs", "5"], "holds no last.pt"),
    Case("extend_run: no checkpoint", lambda ctx: __import__("neuralgraph.train.checkpoint").train.checkpoint
         .extend_run(ctx.tmp, 5), FileNotFoundError, "checkpoint not found"),
]
