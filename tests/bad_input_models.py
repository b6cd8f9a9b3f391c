"""Bad-input cases: models (run by test_bad_input.py; see bad_input.py for the row format)."""
from __future__ import annotations

from bad_input import Case, cli_case

CASES: list[Case] = [
]
