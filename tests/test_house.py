"""The shape of the house: no import circles, the processors below the package's upper floors, short functions.

The import graph is read from the source with ``ast`` (no module is run): an edge ``A -> B``
for every ``import`` / ``from ... import`` in module ``A`` that names module ``B``, at any depth
(also inside functions: a lazy import still ties ``A`` to ``B``), and for the modules the model
registry imports by name (``importlib.import_module`` / ``ModelSpec("name", "module", ...)``
string constants). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module,
else to ``pkg``. Importing ``a.b`` also runs ``a/__init__``; that implicit edge is left out, since
a package's face importing its own submodules is not a circle. What is checked with it is the
runtime: importing the processors in a fresh interpreter loads none of the upper floors.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("neuralgraph", "dws_equiv")

#: What the processors (``dws_equiv``) may never import: the package face, the CLI, the trainer,
#: the tasks, inference and the dataset code (all of which sit above them).
ABOVE_PROCESSORS = ("neuralgraph", "neuralgraph.cli", "neuralgraph.train", "neuralgraph.tasks",
                    "neuralgraph.inference", "neuralgraph.inr", "neuralgraph.zoo", "neuralgraph.data")


def _module_files() -> dict[str, Path]:
    files = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def _string_imports(node: ast.AST) -> list[str]:
    """Module names imported by string: ``importlib.import_module("m")``, ``ModelSpec(name, "m", ...)``."""
    if not isinstance(node, ast.Call):
        return []
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    index = {"import_module": 0, "ModelSpec": 1}.get(name)
    if index is None or len(node.args) <= index:
        return []
    arg = node.args[index]
    return [arg.value] if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else []


def import_graph() -> dict[str, set[str]]:
    """``{module: {modules it imports}}`` over ``neuralgraph`` and ``dws_equiv`` (see the module docstring)."""
    files = _module_files()

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                targets = _string_imports(node)
            edges.update(t for t in map(known, targets) if t is not None and t != module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle ``[a, b, ..., a]``, or ``None`` (iterative depth-first search)."""
    state: dict[str, int] = {}                   # 1: on the stack, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for child in graph.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def _is_under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or (p != "neuralgraph" and module.startswith(p + ".")) for p in prefixes)


def test_the_import_graph_is_read():
    graph = import_graph()
    assert "neuralgraph.graph" in graph["neuralgraph.batching"] or "neuralgraph.schema" in graph["neuralgraph.batching"]
    assert "dws_equiv.ng" in graph["neuralgraph.train.registry"]           # imported by name
    # the search finds a circle when there is one
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_processors_import_nothing_above_them():
    graph = import_graph()
    bad = {}
    for module in graph:
        if module.split(".")[0] != "dws_equiv":
            continue
        up = sorted(m for m in _reachable(graph, module) if _is_under(m, ABOVE_PROCESSORS))
        if up:
            bad[module] = up
    assert not bad, f"dws_equiv modules that reach above the processors: {bad}"


def test_importing_the_processors_loads_no_upper_floor():
    code = ("import sys, dws_equiv, dws_equiv.ng; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('neuralgraph'))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    up = [m for m in loaded.stdout.split() if m != "neuralgraph" and _is_under(m, ABOVE_PROCESSORS)]
    assert not up, f"importing dws_equiv loads {up}"


#: The longest a function (or method) of the package may be, from its ``def`` line to its last line.
MAX_FUNCTION_LINES = 80


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (N lines)`` of every function of neuralgraph and dws_equiv longer than ``limit``."""
    out = []
    for path in _module_files().values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return sorted(out)


def test_long_functions_are_found():
    assert long_functions(limit=5)                                   # the search sees functions
    assert not any("(" in f and int(f.rsplit("(", 1)[1].split()[0]) <= 40 for f in long_functions(limit=40))


def test_no_function_is_longer_than_80_lines():
    offenders = long_functions()
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines (split them): {offenders}"


def test_the_three_splits_implement_the_dataset_contract():
    import inspect

    from neuralgraph.datasets import NeuralGraphDataset
    from neuralgraph.inr import INRDataset
    from neuralgraph.tasks.adapt import AdaptSplitView
    from neuralgraph.tasks.regress import ZooSplitView

    for cls in (INRDataset, ZooSplitView, AdaptSplitView):
        assert issubclass(cls, NeuralGraphDataset), cls
        assert not inspect.isabstract(cls), f"{cls.__name__} leaves {sorted(cls.__abstractmethods__)} unimplemented"
        params = inspect.signature(cls.batch).parameters
        assert {"indices", "augment", "generator"} <= set(params), cls


def test_a_dataset_without_batch_cannot_be_made():
    import pytest

    from neuralgraph.datasets import NeuralGraphDataset

    class Incomplete(NeuralGraphDataset):
        def __len__(self) -> int:
            return 0

    with pytest.raises(TypeError, match="batch"):
        Incomplete()


def test_the_face_is_small_and_its_old_names_still_work_with_a_warning():
    import importlib
    import warnings

    import pytest

    import neuralgraph as ng

    assert len(ng.__all__) <= 22
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in ng.__all__:
            getattr(ng, name)                                       # the face itself warns of nothing
    for name, module in ng._MOVED.items():
        with pytest.warns(DeprecationWarning, match=f"neuralgraph.{name} is deprecated.*{module}.{name}"):
            old = getattr(ng, name)
        assert old is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        ng.no_such_name
