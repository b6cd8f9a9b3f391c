"""The shape of the house: no import circles, the processors below the package's upper floors, short functions.

The import graph is read from the source with ``ast`` (no module is run): an edge ``A -> B``
for every ``import`` / ``from ... import`` in module ``A`` that names module ``B``, at any depth
(also inside functions: a lazy import still ties ``A`` to ``B``), and for the modules the model
registry imports by name (``importlib.import_module`` / ``ModelSpec("name", "module", ...)``
string constants). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module,
else to ``pkg``. Importing ``a.b`` also runs ``a/__init__``; that implicit edge is left out, since
a package's face importing its own submodules is not a circle. What is checked with it is the
runtime: importing the processors in a fresh interpreter loads none of the upper floors. The same
graph read between packages (:func:`package_graph`) has no circles either, but for one shared floor
(:data:`SHARED_FLOORS`, with its reason).
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


#: Packages whose modules import each other's, read as one floor by the package-level check, and why.
#: ``neuralgraph.train`` holds both the trainer (which runs the tasks) and the plots, option parsing and
#: prefetching the tasks use; module by module the two are acyclic (``test_no_import_circles``), and
#: untangling the packages means moving three of train's modules below the tasks, for no change at run time.
SHARED_FLOORS = {"neuralgraph.tasks": "neuralgraph.train"}


def package_graph(graph: dict[str, set[str]], shared: dict[str, str] | None = None) -> dict[str, set[str]]:
    """The import graph between packages: each module stands for the package whose directory holds it
    (``neuralgraph.inr.fit`` -> ``neuralgraph.inr``); a module beside a package face (``neuralgraph.graph``)
    is its own node, and so is the face. ``shared`` maps a package to the one it is read as."""
    files = _module_files()
    shared = SHARED_FLOORS if shared is None else shared

    def package(module: str) -> str:
        parts = module.split(".")
        for k in range(len(parts), 1, -1):
            name = ".".join(parts[:k])
            if name in files and files[name].name == "__init__.py":
                return shared.get(name, name)
        return module

    out: dict[str, set[str]] = {}
    for module, imports in graph.items():
        edges = out.setdefault(package(module), set())
        edges.update(p for p in map(package, imports) if p != package(module))
    return out


def test_no_import_circles_between_packages():
    graph = import_graph()
    packages = package_graph(graph)
    assert {"neuralgraph.inr", "neuralgraph.data", "neuralgraph.train", "dws_equiv.ng"} <= set(packages)
    assert "neuralgraph.data" in packages["neuralgraph.inr"]           # inr.splits reads the images
    cycle = find_cycle(packages)
    assert cycle is None, "import circle between packages: " + " -> ".join(cycle)
    # the one shared floor is there because of a real circle, and it is the only one
    assert find_cycle(package_graph(graph, shared={})) in (["neuralgraph.tasks", "neuralgraph.train",
                                                              "neuralgraph.tasks"],
                                                             ["neuralgraph.train", "neuralgraph.tasks",
                                                              "neuralgraph.train"])
    # a circle made of modules that do not import each other is found (data.idx -> inr.fit, inr.splits -> data)
    tangled = {**graph, "neuralgraph.data.idx": graph["neuralgraph.data.idx"] | {"neuralgraph.inr.fit"}}
    assert find_cycle(tangled) is None and find_cycle(package_graph(tangled)) is not None


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
    for name, where in ng._MOVED.items():
        module, _, new = where.partition(":")
        new = new or name
        with pytest.warns(DeprecationWarning, match=f"neuralgraph.{name} is deprecated.*{module}.{new}"):
            old = getattr(ng, name)
        assert old is getattr(importlib.import_module(module), new)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        ng.no_such_name


def test_renamed_names_still_work_with_a_warning_and_give_the_same_results():
    """taps -> edge_dim, pad_taps -> pad_edge_features, graph_index -> batch_vector, the "parameter layout"
    functions -> parameter_shapes / group_graphs / batch_to_stacked_groups, *_by_order -> rename_state_dict /
    from_state_dict: each old name warns, names its new one, and computes the same thing."""
    import warnings

    import pytest
    import torch
    from torch import nn
    from torch_geometric.data import Batch

    import neuralgraph as ng
    from neuralgraph import graph, interop, schema
    from neuralgraph.architecture import Architecture

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))
    arch = Architecture.from_module(mlp)
    ws, bs = [l.weight.detach().unsqueeze(0) for l in (mlp[0], mlp[2])], [l.bias.detach().unsqueeze(0)
                                                                          for l in (mlp[0], mlp[2])]
    by_position = {f"seq.{i}": t for i, t in enumerate(mlp.state_dict().values())}     # another library's keys
    new = {"to_graph": ng.to_graph(mlp, edge_dim=9),
           "stacked_to_batch": ng.stacked_to_batch(ws, bs, arch, edge_dim=9),
           "graph_from_params": graph.graph_from_params([w[0] for w in ws], [b[0] for b in bs], arch, edge_dim=9),
           "batch_models": ng.batch_models([mlp, cnn], edge_dim=12),
           "from_state_dict": interop.from_state_dict(by_position, arch, edge_dim=9),
           "pad_edge_features": graph.pad_edge_features(ng.to_graph(mlp), edge_dim=9)}
    with pytest.warns(DeprecationWarning) as caught:
        old = {"to_graph": ng.to_graph(mlp, taps=9), "stacked_to_batch": ng.stacked_to_batch(ws, bs, arch, taps=9),
               "graph_from_params": graph.graph_from_params([w[0] for w in ws], [b[0] for b in bs], arch, taps=9),
               "batch_models": ng.batch_models([mlp, cnn], taps=12),
               "from_state_dict": interop.to_graph_by_order(by_position, arch, taps=9),
               "pad_edge_features": graph.pad_taps(ng.to_graph(mlp), taps=9)}
    said = " ".join(str(w.message) for w in caught)
    for name in ("taps=", "edge_dim=", "pad_edge_features", "from_state_dict"):
        assert name in said
    for key, g in new.items():
        assert torch.equal(g.edge_attr, old[key].edge_attr) and g.edge_attr.size(-1) in (9, 12), key
        assert torch.equal(g.x, old[key].x) and torch.equal(g.edge_index, old[key].edge_index), key
    with pytest.raises(TypeError, match="both edge_dim= and its deprecated name taps="):
        ng.to_graph(mlp, taps=9, edge_dim=9)

    batch = Batch.from_data_list([ng.to_graph(mlp), ng.to_graph(nn.Sequential(nn.Linear(2, 3), nn.ReLU(),
                                                                              nn.Linear(3, 1)))])
    renamed = {("graph", "pad_taps"): graph.pad_edge_features, ("graph", "graph_index"): schema.batch_vector,
               ("schema", "graph_index"): schema.batch_vector, ("graph", "parameter_layout"): graph.parameter_shapes,
               ("graph", "group_by_layout"): graph.group_graphs,
               ("graph", "stacked_by_layout"): graph.batch_to_stacked_groups,
               ("interop", "state_dict_by_order"): interop.rename_state_dict,
               ("interop", "to_graph_by_order"): interop.from_state_dict}
    modules = {"graph": graph, "schema": schema, "interop": interop}
    for (module, name), now in renamed.items():
        with pytest.warns(DeprecationWarning, match=f"neuralgraph.{module}.{name} is deprecated.*{now.__name__}"):
            assert getattr(modules[module], name) is now
    with pytest.warns(DeprecationWarning, match="by='shapes'"):
        old_groups = graph.group_graphs(batch, by="layout")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        groups = graph.group_graphs(batch)                       # tanh and relu: one set of parameter shapes
        by_arch = graph.batch_to_stacked_groups(batch, by="architecture")
    assert [ids.tolist() for _, ids in groups] == [ids.tolist() for _, ids in old_groups] == [[0, 1]]
    assert [ids.tolist() for _, ids, *_ in by_arch] == [[0], [1]]
    with pytest.raises(ValueError, match="by must be 'shapes' or 'architecture'"):
        graph.group_graphs(batch, by="kinds")
    for obj, old_name, new_name in ((arch.layers[0], "taps", "weights_per_edge"), (arch, "max_taps", "edge_dim"),
                                    (ng.to_graph(cnn), "num_taps", "num_edge_features")):
        with pytest.warns(DeprecationWarning, match=new_name):
            assert getattr(obj, old_name) == getattr(obj, new_name)
    assert (arch.edge_dim, Architecture.from_module(cnn).edge_dim) == (1, 9)


def test_the_sine_inrs_moved_to_inr_and_their_old_names_still_work_with_a_warning():
    import importlib

    import pytest

    import neuralgraph.data
    import neuralgraph.data.sines as old_module
    from neuralgraph.inr import sines

    for name in ("build_sine_splits", "sine_grid", "sine_signals", "fit_sines", "SINE_WIDTHS"):
        with pytest.warns(DeprecationWarning, match=f"neuralgraph.data.sines.{name} is deprecated.*inr.sines"):
            assert getattr(old_module, name) is getattr(sines, name)
    with pytest.warns(DeprecationWarning, match="neuralgraph.data.build_sine_splits is deprecated"):
        assert neuralgraph.data.build_sine_splits is sines.build_sine_splits
    assert "neuralgraph.inr" not in import_graph()["neuralgraph.data"]
    assert importlib.import_module("neuralgraph.inr").build_sine_splits is sines.build_sine_splits
