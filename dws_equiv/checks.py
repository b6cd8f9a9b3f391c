"""Input checks shared by the processors: what they refuse, and how they say it.

Every processor (``DWSNet``, ``NGGNN``, ``NGTransformer``) calls :func:`check_graph_batch` first, so
a tensor, a plain ``Data`` without the neural-graph fields, or an empty batch gets one clear
``ValueError`` naming the processor, instead of an ``AttributeError`` deep inside. Constructors
validate their hyper-parameters with :func:`check_positive_int` / :func:`check_probability` /
:func:`check_positive_float`, so ``hidden=0`` fails where it is given, not in the first forward.
"""
from __future__ import annotations

import math
from typing import Any

from torch_geometric.data.data import BaseData

from neuralgraph.schema import PROCESSOR_FIELDS as GRAPH_FIELDS
from neuralgraph.schema import num_graphs

__all__ = ["GRAPH_FIELDS", "check_graph_batch", "check_positive_int", "check_nonnegative_int",
           "check_probability", "check_positive_float"]

def check_graph_batch(batch: Any, who: str, extra: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` unless ``batch`` is a non-empty neural graph or batch of them.

    Args:
        batch: what the processor's ``forward`` received.
        who: the processor's name, for the message.
        extra: further fields this processor needs (e.g. ``("arch",)`` for probe features).
    """
    if isinstance(batch, (list, tuple)) and not batch:
        raise ValueError(f"{who} got an empty list (no graphs): there is nothing to process; a batch is made from a "
                         f"non-empty list with neuralgraph.batch_models(models_or_graphs)")
    if not isinstance(batch, BaseData):
        raise ValueError(f"{who} takes a neural graph or a PyG Batch of them (neuralgraph.to_graph, "
                         f"neuralgraph.batch_models, Batch.from_data_list, INRDataset.batch), got {type(batch).__name__}")
    missing = [k for k in (*GRAPH_FIELDS, *extra) if k not in batch or batch[k] is None]
    if missing:
        raise ValueError(f"{who}: the input lacks the neural-graph field(s) {missing}; make graphs with "
                         f"neuralgraph.to_graph or neuralgraph.stacked_to_batch")
    graphs = num_graphs(batch)
    if graphs == 0 or batch.x.size(0) == 0:
        raise ValueError(f"{who}: empty batch (0 graphs); nothing to process")
    for key in ("x", "edge_attr"):
        if not batch[key].is_floating_point():
            raise ValueError(f"{who}: {key} must be floating point, got {batch[key].dtype}")
        if batch[key].dim() != 2 or batch[key].size(1) < 1:
            raise ValueError(f"{who}: {key} has shape {list(batch[key].shape)}; a neural graph's {key} is "
                             f"[{'N, 1+ (the bias first)' if key == 'x' else 'E, K'}] with at least one column"
                             f"{' (K: the kernel taps)' if key == 'edge_attr' else ''}")


def check_positive_int(who: str, **values: Any) -> None:
    """Each value must be an integer >= 1 (``bool`` is not an integer here)."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{who}: {name} must be an integer >= 1, got {v!r}")


def check_nonnegative_int(who: str, **values: Any) -> None:
    """Each value must be an integer >= 0."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{who}: {name} must be an integer >= 0, got {v!r}")


def check_probability(who: str, **values: Any) -> None:
    """Each value must be a number in ``[0, 1)`` (a dropout rate)."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ValueError(f"{who}: {name} must be a number in [0, 1), got {v!r}")


def check_positive_float(who: str, **values: Any) -> None:
    """Each value must be a finite number > 0."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{who}: {name} must be a finite number > 0, got {v!r}")


def renamed_argument(who: str, old: str, old_value: Any, new: str, new_value: Any, convert=lambda v: v) -> Any:
    """The value of argument ``new``, taking the deprecated ``old`` (converted) when given, with a warning."""
    if old_value is None:
        return new_value
    import warnings

    warnings.warn(f"{who}: {old}= is deprecated, use {new}= ({new}={convert(old_value)})", DeprecationWarning,
                  stacklevel=3)
    return convert(old_value)
