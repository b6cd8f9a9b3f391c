"""Tasks of the trainer: what a run optimises and measures (see :mod:`neuralgraph.tasks.base`).

============  ======================  =====================================================
``--task``    head                    what
============  ======================  =====================================================
classify      invariant (logits)      each network's class; cross-entropy, accuracy
edit          equivariant (a graph)   INRs edited to render the dilated image; pixel MSE
regress       invariant (a scalar)    a zoo CNN's test accuracy; MSE, Kendall's tau
ssl           invariant (embedding)   contrastive embeddings of sine INRs; linear probe of (a, b)
adapt         equivariant (a graph)   zoo classifiers edited for a corrupted target domain; target accuracy
============  ======================  =====================================================
"""
from __future__ import annotations

from typing import Any

from .adapt import Adapt
from .base import Task
from .classify import Classify
from .edit import Edit
from .regress import Regress
from .ssl import Contrastive

__all__ = ["Task", "Classify", "Edit", "Regress", "Contrastive", "Adapt", "TASKS", "make_task", "task_options", "parse_task_options"]

#: ``--task`` name -> class.
TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (Classify, Edit, Regress, Contrastive, Adapt)}


def task_options(name: str) -> dict[str, Any]:
    """``{option: annotation}`` of task ``name``'s constructor (what ``--task-arg`` may set)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    from ..train.options import signature_hints

    return signature_hints(TASKS[name].__init__)


def make_task(name: str, **options: Any) -> Task:
    """The task ``name`` with ``options``, each checked by the annotation of the task's constructor
    (``ValueError`` naming unknown options and the accepted ones, or a value of the wrong type)."""
    from ..train.options import check_options

    check_options(options, task_options(name), owner=f"task {name!r}", noun="option")
    return TASKS[name](**options)


def parse_task_options(name: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Command-line ``(key, text)`` pairs (``--task-arg KEY=VALUE``) read by task ``name``'s annotations."""
    from ..train.options import parse_options

    return parse_options(pairs, task_options(name), owner=f"task {name!r}", noun="option")
