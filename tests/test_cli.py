"""The command line, run in-process (`neuralgraph.cli.main`) and once as `python -m neuralgraph`."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from neuralgraph.cli import main


def test_fit_then_train_then_resume(tmp_path, capsys):
    data, run = tmp_path / "inrs", tmp_path / "run"
    assert main(["fit-inrs", "--source", "digits", "--out", str(data), "--n-train", "60", "--n-val", "20",
                 "--n-test", "20", "--steps", "30", "--quiet"]) == 0
    assert "PSNR mean" in capsys.readouterr().out
    assert {p.name for p in data.iterdir()} >= {"train.pt", "val.pt", "test.pt"}
    args = ["train", "--data", str(data), "--out", str(run), "--model", "mlp", "--epochs", "2",
            "--model-arg", "hidden=(32,)", "--augment", "noise_std=0.01", "--threads", "1", "--quiet"]
    assert main(args + ["--stop-after-epoch", "1"]) == 0
    assert not (run / "results.json").exists()
    assert main(args) == 2                                    # an existing run is never overwritten
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 2 and results["config"]["model_kwargs"] == {"hidden": [32]}


def test_quickstart_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--model", "mlp", "--epochs", "1", "--threads", "1",
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and "reconstructions.png" in text
    assert (out / "run" / "learning_curves.png").is_file() and (out / "run" / "reconstructions.png").is_file()
    # the same directory for another model: one line saying what differs and to use another --out
    assert main(["quickstart", "--out", str(out), "--model", "dwsnet", "--epochs", "1", "--threads", "1",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another --out" in err and str(out / "run") in err, err
    assert "model: checkpoint 'mlp' vs now 'dwsnet'" in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "/nonexistent/inrs", "--out", "x"], "data directory not found"),
    (["fit-inrs", "--source", "mnist", "--out", "x"], "root"),
])
def test_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_module_entry_point_lists_models():
    out = subprocess.run([sys.executable, "-m", "neuralgraph", "models"], capture_output=True, text=True, check=True)
    for name in ("dwsnet", "nggnn", "ngt", "mlp", "mlp-aug"):
        assert name in out.stdout
    assert "unavailable" not in out.stdout


# ----------------------------------------------------------------------------
# KEY=VALUE options are parsed by the annotated type of their target
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    from neuralgraph.inr import build_inr_splits

    out = tmp_path_factory.mktemp("cli_inrs")
    build_inr_splits("digits", out, n_train=60, n_val=20, n_test=20, steps=20, progress=False)
    return out


def test_false_turns_features_off(small_data, tmp_path):
    """``permute=false`` / ``use_probes=false`` mean False (the string "false" used to be truthy)."""
    from neuralgraph.train import load_trained

    run = tmp_path / "run"
    assert main(["train", "--data", str(small_data), "--out", str(run), "--model", "nggnn", "--epochs", "1",
                 "--model-arg", "use_probes=false", "--model-arg", "hidden=8", "--model-arg", "num_layers=1",
                 "--augment", "permute=False", "--augment", "noise-std=0", "--threads", "1", "--quiet"]) == 0
    config = json.loads((run / "results.json").read_text())["config"]
    assert config["model_kwargs"] == {"use_probes": False, "hidden": 8, "num_layers": 1}
    assert config["augment"] == {"permute": False, "noise_std": 0.0}
    model, _ = load_trained(run)
    assert model.probes is None
    # every run writes the configuration it ran; --config replays it, flags override it
    assert json.loads((run / "config.json").read_text()) == config
    again = tmp_path / "again"
    assert main(["train", "--config", str(run / "config.json"), "--out", str(again), "--lr", "0.002",
                 "--augment", "permute=true", "--no-normalize", "--threads", "1", "--quiet"]) == 0
    replayed = json.loads((again / "config.json").read_text())
    assert replayed == {**config, "out": str(again), "lr": 0.002, "normalize": False,
                        "augment": {"permute": True, "noise_std": 0.0}}
    assert main(["train", "--config", str(run / "results.json"), "--out", str(tmp_path / "third"), "--epochs", "1",
                 "--stop-after-epoch", "1", "--threads", "1", "--quiet"]) == 0


@pytest.mark.parametrize("model, pairs, expect", [
    ("nggnn", [("use_probes", "NO"), ("hidden", "16"), ("rff_sigma", "2")],
     {"use_probes": False, "hidden": 16, "rff_sigma": 2.0}),
    ("nggnn", [("use_probes", "1"), ("aggregators", "mean,max")],
     {"use_probes": True, "aggregators": ("mean", "max")}),
    ("dwsnet", [("norm", "Yes"), ("reduce", "sum"), ("depths", "(2, 3)"), ("mlp_hidden", "None")],
     {"norm": True, "reduce": "sum", "depths": (2, 3), "mlp_hidden": None}),
    ("mlp", [("hidden", "[64, 32]"), ("dropout", "0.5")], {"hidden": (64, 32), "dropout": 0.5}),
    ("mlp", [("hidden", "64")], {"hidden": (64,)}),
    ("mlp", [("hidden", "()")], {"hidden": ()}),
])
def test_model_args_follow_the_constructor_annotations(model, pairs, expect):
    from neuralgraph.train.registry import parse_hyperparameters

    assert parse_hyperparameters(model, pairs) == expect


@pytest.mark.parametrize("model, pairs, fragments", [
    ("nggnn", [("use_probes", "flase")], ["use_probes", "true/false"]),
    ("nggnn", [("hidden", "8.5")], ["hidden", "int"]),
    ("nggnn", [("hidden", "abc")], ["hidden", "int"]),
    ("nggnn", [("hidden", "True")], ["hidden", "int"]),
    ("nggnn", [("rff_sigma", "nan")], ["rff_sigma", "finite"]),
    ("dwsnet", [("reduce", "median")], ["reduce", "'mean', 'sum', 'max'"]),
    ("dwsnet", [("depths", "2,x")], ["depths", "int"]),
    ("nggnn", [("widht", "3")], ["widht", "accepted", "hidden"]),
    ("nggnn", [("hidden", "8"), ("hidden", "16")], ["hidden", "twice"]),
    ("nggnn", [("out_dim", "3")], ["out_dim", "dataset"]),
    ("mlp-aug", [("permute_augment", "false")], ["permute_augment", "fixes"]),
])
def test_bad_model_args_name_the_key_and_the_accepted_values(model, pairs, fragments):
    from neuralgraph.train.registry import parse_hyperparameters

    with pytest.raises(ValueError) as info:
        parse_hyperparameters(model, pairs)
    message = str(info.value)
    assert "\n" not in message and all(f in message for f in fragments), message


@pytest.mark.parametrize("kwargs, fragments", [
    ({"model_kwargs": {"use_probes": "false"}}, ["use_probes", "bool"]),
    ({"model_kwargs": {"hidden": 8.5}}, ["hidden", "int"]),
    ({"model_kwargs": {"hidden": True}}, ["hidden", "int"]),
    ({"model_kwargs": {"nosuch": 1}}, ["nosuch", "accepted"]),
    ({"model": "mlp", "model_kwargs": {"hidden": 64}}, ["hidden", "sequence"]),
    ({"model": "mlp", "model_kwargs": {"hidden": (64, "a")}}, ["hidden", "int"]),
    ({"augment": {"permute": "false"}}, ["permute", "bool"]),
    ({"augment": {"permutte": True}}, ["permutte", "accepted", "permute"]),
    ({"augment": {"noise_std": float("inf")}}, ["noise_std", "finite"]),
    ({"epochs": 2.5}, ["epochs", "int"]),
    ({"lr": float("inf")}, ["lr"]),
    ({"warmup_epochs": float("inf")}, ["warmup_epochs"]),
    ({"clip_grad_norm": float("nan")}, ["clip_grad_norm"]),
    ({"device": "mps"}, ["mps", "cpu"]),
])
def test_train_config_validates_like_the_cli(kwargs, fragments):
    from neuralgraph.train import TrainConfig

    with pytest.raises(ValueError) as info:
        TrainConfig(data="d", out="o", **kwargs)
    message = str(info.value)
    assert "\n" not in message and all(f in message for f in fragments), message
