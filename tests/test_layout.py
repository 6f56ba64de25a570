"""The code's shape: no import cycles (function-local imports included), short functions, dated notes kept out of docstrings.

Read with `ast`, not by importing: a cycle hidden behind a function-local
import is still a cycle in the design. `from pkg import submodule` counts as a
dependency on the submodule, `from pkg import name` on the package.
"""

import ast
import re
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("emulator", "workloads", "calibration", "experiments")
SHORT_FUNCTION_DIRS = ("calibration", "emulator/cost")
MAX_FUNCTION_LINES = 60
DATED = re.compile(r"\b20\d\d-\d\d-\d\d\b|development (VM|CPU|machine)")


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def imported(node, known: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names]
    return []


def import_graph() -> nx.DiGraph:
    known = modules()
    graph = nx.DiGraph()
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            for target in imported(node, known):
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph.add_edge(name, target)
    return graph


def test_no_package_has_an_import_cycle():
    graph = import_graph()
    assert graph.has_edge("calibration.run", "calibration.plan")  # the reader sees function-level imports too
    assert list(nx.simple_cycles(graph)) == []


def test_calibration_and_cost_functions_fit_on_a_screen():
    long = []
    for folder in SHORT_FUNCTION_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.name} ({lines} lines)")
    assert long == []


def test_module_docstrings_hold_no_dated_measurements():
    dated = [str(path.relative_to(ROOT)) for path in modules().values()
             if DATED.search(ast.get_docstring(ast.parse(path.read_text())) or "")]
    assert dated == []  # history belongs in docs/notes/


def test_the_cost_model_never_switches_on_the_device_kind():
    switch = re.compile(r"""\.kind\s*[!=]=\s*["'](cpu|gpu)["']|device\s*[!=]=\s*["'](cpu|cuda)["']""")
    found = [f"{path.relative_to(ROOT)}:{i}" for path in (ROOT / "emulator" / "cost").rglob("*.py")
             for i, line in enumerate(path.read_text().splitlines(), 1) if switch.search(line)]
    assert found == []
