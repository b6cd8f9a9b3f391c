"""The examples run end to end (real conversions, real pictures)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_convert_permute_draw(tmp_path, capsys):
    load("convert_permute_draw").main(["--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "same function" in out
    assert (tmp_path / "mlp.png").stat().st_size > 10_000
    assert (tmp_path / "cnn.png").stat().st_size > 10_000
