"""The import contract (broker/contract.py), on grimp's graph, which counts imports made inside functions.

`lint-imports` (.importlinter, run by `make test`) checks the contract between packages and inside each room;
these tests add what its contracts cannot say: no cycle between any two of broker's modules, and no module
outside the composition root that reaches `adapters` even through other modules.
"""

from __future__ import annotations

import grimp
import pytest

ROOT = ("broker.runner", "broker.cli", "broker.__main__")  # the composition root: wires adapters in
CONTRACT = {"broker.errors", "broker.identifiers"}  # all of broker that adapters may import


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("broker", "adapters", cache_dir=None)


def _in(module: str, packages: tuple[str, ...] | set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_the_graph_counts_imports_made_inside_functions(graph):
    # broker.cli.adapters opens the lineage store with an import inside `open_lineage`
    details = graph.get_import_details(importer="broker.cli.adapters", imported="adapters.lineage")
    assert details and all(d["line_contents"].startswith("from adapters.lineage") for d in details)


def test_no_import_cycle_among_the_modules_of_broker_and_adapters(graph):
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    g = grimp.ImportGraph()
    for name in ("p.a", "p.b", "p.c"):
        g.add_module(name)
    g.add_import(importer="p.a", imported="p.b")
    g.add_import(importer="p.b", imported="p.c")
    g.add_import(importer="p.c", imported="p.a")
    assert cycles(g) == [["p.a", "p.b", "p.c"]]


def test_no_broker_module_outside_the_composition_root_reaches_adapters(graph):
    reaching = {
        module: sorted(m for m in graph.find_upstream_modules(module) if _in(m, ("adapters",)))
        for module in graph.find_descendants("broker")
        if not _in(module, ROOT)
    }
    assert {m: found for m, found in reaching.items() if found} == {}


def test_adapters_reach_only_the_contract_of_broker(graph):
    reached = {m for module in graph.find_descendants("adapters") for m in graph.find_upstream_modules(module)}
    assert {m for m in reached if _in(m, ("broker",))} <= CONTRACT
