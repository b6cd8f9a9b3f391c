"""Bad-input cases: cli (run by test_bad_input.py; see bad_input.py for the row format)."""
from __future__ import annotations

from bad_input import Case, cli_case

CASES: list[Case] = [
    cli_case("train: missing data directory", ["train", "--data", "{tmp}/nonexistent", "--out", "{tmp}/run"],
             "data directory not found"),
    cli_case("fit-inrs: mnist without --root", ["fit-inrs", "--source", "mnist", "--out", "{tmp}/x"], "root"),
    cli_case("train: unknown model", ["train", "--data", "{data}", "--out", "{tmp}/run", "--model", "nosuch"],
             "invalid choice: 'nosuch'"),
]
