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
