"""The coordinate convention of image INRs: which input is the row and which the column.

This library's image INRs take ``(row, col)`` coordinates (:func:`~neuralgraph.inr.image_grid`:
the first input moves down the rows). DWSNets' and neural-graphs' take ``(x, y) = (col, row)``
(their ``make_coordinates``: ``np.meshgrid`` of the x and y axes, flattened row by row). The
same weights rendered on the other grid give the transposed image, so the convention is part
of an INR and is stored with its architecture:

* ``"rc"``: ``(row, col)``, no :class:`~neuralgraph.Reorder` (every INR fitted here, and every
  file written before conventions were stored: they keep their meaning).
* ``"xy"``: ``(x = col, y = row)``, ``Reorder((1, 0))`` before the first layer
  (``Architecture.pre``): the graph holds the peers' weights unchanged and the model that
  :func:`neuralgraph.to_model` rebuilds takes ``(row, col)`` and renders the peers' image.

Two conventions never meet silently: they are different architectures, so training on splits
of both, or applying a run trained on one to data of the other, is refused naming the input
order. :func:`convert_coordinates` turns one into the other exactly (it swaps the first layer's
weight columns; no value changes). Renderers read the convention from the architecture
(:func:`image_coordinates`, :func:`row_col_params`).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from torch import Tensor

from ..architecture import Architecture, ModuleSpec

__all__ = ["COORDINATES", "coordinate_convention", "with_coordinates", "convert_coordinates", "image_coordinates",
           "row_col_params"]

#: Coordinate conventions of 2-input image INRs -> the order in which the first layer reads (row, col).
COORDINATES: dict[str, tuple[int, int]] = {"rc": (0, 1), "xy": (1, 0)}


def _check_image_inr(arch: Architecture, who: str) -> None:
    if not isinstance(arch, Architecture):
        raise ValueError(f"{who}: arch must be an Architecture, got {type(arch).__name__}")
    if arch.layers[0].kind != "linear" or arch.widths[0] != 2:
        raise ValueError(f"{who}: a coordinate convention belongs to image INRs (a Linear first layer of 2 inputs); "
                         f"this architecture has widths {list(arch.widths)} ({arch.layers[0].kind} first)")


def _check_name(convention: str, who: str) -> str:
    if convention not in COORDINATES:
        raise ValueError(f"{who}: unknown coordinate convention {convention!r}; choose 'rc' ((row, col), this "
                         f"library's) or 'xy' ((x = col, y = row), DWSNets' / neural-graphs')")
    return convention


def coordinate_convention(arch: Architecture) -> str:
    """``"rc"`` or ``"xy"``: how the image INRs of ``arch`` read their coordinates (see the module)."""
    _check_image_inr(arch, "coordinate_convention")
    order = arch.input_order
    return "rc" if order == COORDINATES["rc"] else "xy"


def with_coordinates(arch: Architecture, convention: str) -> Architecture:
    """``arch`` for INRs of the same weights that read ``convention`` coordinates (``"rc"`` or ``"xy"``).

    Sets the :class:`~neuralgraph.Reorder` before the first layer; the weights are not touched, so
    this states what the weights mean (e.g. an importer naming the peers' convention). To change
    the convention of given INRs and keep the images they render, use :func:`convert_coordinates`.
    """
    _check_image_inr(arch, "with_coordinates")
    order = COORDINATES[_check_name(convention, "with_coordinates")]
    pre = tuple(m for m in arch.pre if m.kind != "reorder")
    if order != COORDINATES["rc"]:
        pre = (*pre, ModuleSpec("reorder", order))
    return dataclasses.replace(arch, pre=pre)


def convert_coordinates(weights: Sequence[Tensor], biases: Sequence[Tensor], arch: Architecture, to: str
                        ) -> tuple[list[Tensor], list[Tensor], Architecture]:
    """The same image INRs in the ``to`` coordinate convention: every INR renders the same image.

    Args:
        weights: stacked per-layer weights ``[n, out, in]`` (torch layout).
        biases: stacked per-layer biases ``[n, out]``.
        arch: their architecture (its convention is read from it).
        to: ``"rc"`` or ``"xy"``.

    Returns ``(weights, biases, arch)``: the first layer's two weight columns swapped when the
    conventions differ (an exact permutation: no value changes), the other tensors as given.

    Shapes: ``weights[0]`` ``[n, h, 2]`` -> ``[n, h, 2]``.
    """
    _check_image_inr(arch, "convert_coordinates")
    to = _check_name(to, "convert_coordinates")
    weights, biases = list(weights), list(biases)
    if coordinate_convention(arch) != to:
        weights[0] = weights[0].flip(-1)
    return weights, biases, with_coordinates(arch, to)


def image_coordinates(arch: Architecture, height: int, width: int) -> Tensor:
    """The pixel grid ``[H*W, 2]`` in the order the INRs of ``arch`` read it (row-major pixels).

    :func:`~neuralgraph.inr.image_grid` (``(row, col)``) reordered by the architecture's
    :class:`~neuralgraph.Reorder`: ``siren_forward(weights, biases, image_coordinates(arch, H, W))``
    gives the image, whatever the convention.
    """
    from .siren import image_grid

    _check_image_inr(arch, "image_coordinates")
    return image_grid(height, width)[:, list(arch.input_order)]


def row_col_params(arch: Architecture, weights: Sequence[Tensor], biases: Sequence[Tensor]
                   ) -> tuple[list[Tensor], list[Tensor]]:
    """Parameters of the same INRs reading ``(row, col)``: what :func:`~neuralgraph.inr.render` expects.

    Unchanged for ``"rc"`` INRs (and for INRs that are not 2-input image INRs); the first layer's
    columns swapped for ``"xy"`` ones.
    """
    if arch.layers[0].kind != "linear" or arch.widths[0] != 2:
        return list(weights), list(biases)
    weights, biases, _ = convert_coordinates(weights, biases, arch, "rc")
    return weights, biases
