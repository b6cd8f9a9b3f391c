"""Bad input gets a clear error, never a wrong result: one table of cases across the library.

Each row of the tables in ``bad_input_*.py`` is a call that must raise a given
exception whose message contains a given fragment (naming the module, shape,
key or file at fault). See ``bad_input.py`` for how to add a row.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import bad_input_cli
import bad_input_adapt
import bad_input_conversion
import bad_input_data
import bad_input_gpu
import bad_input_interop
import bad_input_models
import bad_input_pictures
import bad_input_ssl
import bad_input_zoo
from bad_input import Case, Ctx

TABLES = {
    "conversion": bad_input_conversion.CASES,
    "data": bad_input_data.CASES,
    "cli": bad_input_cli.CASES,
    "models": bad_input_models.CASES,
    "zoo": bad_input_zoo.CASES,
    "gpu": bad_input_gpu.CASES,
    "ssl": bad_input_ssl.CASES,
    "interop": bad_input_interop.CASES,
    "pictures": bad_input_pictures.CASES,
    "adapt": bad_input_adapt.CASES,
}
CASES: list[Case] = [c for cases in TABLES.values() for c in cases]


def test_the_readme_counts_the_rows():
    """The README's figure of the table is the table's length (add a row, update the figure)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    said = re.search(r"runs a table of (\d[\d,]*) cases", readme)
    assert said, "README.md no longer says 'runs a table of N cases' (tests/test_bad_input.py checks N)"
    assert int(said.group(1).replace(",", "")) == len(CASES), (
        f"README.md says {said.group(1)} bad-input cases, the table has {len(CASES)}: update the README")


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


@pytest.fixture(scope="session")
def small_inr_data(tmp_path_factory):
    """60 / 20 / 20 digit INRs, 20 fit steps: enough for every case that needs a dataset."""
    cache: dict[str, object] = {}

    def make():
        if "path" not in cache:
            from neuralgraph.inr import build_inr_splits

            out = tmp_path_factory.mktemp("bad_input_data")
            build_inr_splits("digits", out, n_train=60, n_val=20, n_test=20, steps=20, progress=False)
            cache["path"] = out
        return cache["path"]
    return make


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{area}: {c.id}")
                                  for area, cases in TABLES.items() for c in cases])
def test_bad_input(case: Case, tmp_path, small_inr_data):
    ctx = Ctx(tmp=tmp_path, data_factory=small_inr_data)
    with pytest.raises(case.error) as info:
        case.call(ctx)
    message = str(info.value)
    assert case.match in message, f"expected {case.match!r} in the message, got: {message}"
