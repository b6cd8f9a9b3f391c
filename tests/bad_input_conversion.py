"""Bad-input cases: conversion (run by test_bad_input.py; see bad_input.py for the row format)."""
from __future__ import annotations

from torch import nn

import neuralgraph as ng
from bad_input import Case

CASES: list[Case] = [
    Case("unsupported module", lambda ctx: ng.to_graph(nn.Sequential(nn.Linear(2, 4), nn.GroupNorm(2, 4))),
         ValueError, "model[1]: unsupported module GroupNorm"),
]
