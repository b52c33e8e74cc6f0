"""Layers import only downward: litefocus (the method) < minildm (models trained here) < analysis (measurement and
evaluation) < litefocus_cli (the command line). Every import statement counts, also those inside functions."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["litefocus", "minildm", "analysis", "litefocus_cli"]


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level packages each module of ``package`` imports (absolute imports; relative ones stay inside)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("position", range(len(LAYERS)), ids=LAYERS)
def test_each_layer_imports_only_layers_below_it(position):
    above = set(LAYERS[position + 1:])
    upward = {module: sorted(names & above) for module, names in imported_packages(LAYERS[position]).items()
              if names & above}
    assert upward == {}, f"{LAYERS[position]} imports from layers above it: {upward}"


def test_the_scan_sees_imports_inside_functions():
    source = "def f():\n    import analysis\n    from minildm.data import make_clip\n"
    tree = ast.parse(source)
    seen = {n.names[0].name for n in ast.walk(tree) if isinstance(n, ast.Import)}
    seen |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert seen == {"analysis", "minildm"}
