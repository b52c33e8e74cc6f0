"""Layers import only downward:

    litefocus (the method)
      < minildm (models trained here), analysis (measurement and evaluation; imports nothing of minildm)
      < studies (the scripts behind data/)
      < litefocus_cli (the command line)

Every import statement counts, also those inside functions. And no module imports another module's private name."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "litefocus": set(),
    "minildm": {"litefocus"},
    "analysis": {"litefocus"},
    "studies": {"litefocus", "minildm", "analysis"},
    "litefocus_cli": {"litefocus", "minildm", "analysis", "studies"},
}
CHECKED = ["litefocus", "minildm", "analysis", "studies", "litefocus_cli", "benchmarks", "tests"]


def import_nodes(path: Path):
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level packages each module of ``package`` imports (absolute imports; relative ones stay inside)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in import_nodes(path):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("package", list(ALLOWED))
def test_each_layer_imports_only_layers_below_it(package):
    forbidden = set(ALLOWED) - ALLOWED[package] - {package}
    upward = {module: sorted(names & forbidden) for module, names in imported_packages(package).items()
              if names & forbidden}
    assert upward == {}, f"{package} imports what it may not ({sorted(forbidden)}): {upward}"


def test_the_scan_sees_imports_inside_functions():
    source = "def f():\n    import analysis\n    from minildm.data import make_clip\n"
    tree = ast.parse(source)
    seen = {n.names[0].name for n in ast.walk(tree) if isinstance(n, ast.Import)}
    seen |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert seen == {"analysis", "minildm"}


def test_no_module_imports_a_private_name_of_another():
    private = []
    for folder in CHECKED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in import_nodes(path):
                if isinstance(node, ast.ImportFrom) and node.module:
                    private += [f"{path.relative_to(ROOT)}: from {'.' * node.level}{node.module} import {a.name}"
                                for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert private == []


def test_the_studies_stay_out_of_the_wheel():
    text = (ROOT / "pyproject.toml").read_text()
    include = next(line for line in text.splitlines() if line.startswith("include = "))
    assert "studies" not in ast.literal_eval(include.split("=", 1)[1].split("#")[0].strip())


OUTPUT_OPTIONS = ("--out", "--csv", "--operations-csv")


def test_no_study_or_benchmark_writes_into_data_by_default():
    """Issue 27, case 2: ``studies.minildm.fidelity`` replaced the model card's table when run with its defaults.
    A default output lies in results/ or runs/; replacing a committed result takes an explicit path. Also no
    writing into ``--path`` (the weights' folder, shipped by default)."""
    found = []
    for folder in ("studies", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text()
            for node in ast.walk(ast.parse(source)):
                if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
                        and node.args and isinstance(node.args[0], ast.Constant)
                        and node.args[0].value in OUTPUT_OPTIONS):
                    continue
                default = next((k.value for k in node.keywords if k.arg == "default"), None)
                text = ast.get_source_segment(source, default) if default is not None else ""
                if any(word in text for word in ("data", "DEFAULT_PATH", "OFFLINE_PATH", "shipped_path", "ROOT")):
                    found.append(f"{path.relative_to(ROOT)}: {node.args[0].value} default {text}")
            found += [f"{path.relative_to(ROOT)}: writes into args.path" for line in source.splitlines()
                      if "args.path /" in line and ("write" in line or "save" in line)]
    assert found == []


def sibling_imports(package: str) -> dict[str, set[str]]:
    """Per module of ``package``, the sibling modules it imports (relative or absolute, inside functions too)."""
    found = {}
    for path in sorted((ROOT / package).glob("*.py")):
        names = set()
        for node in import_nodes(path):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module == package:
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package + "."):
                names.add(node.module.split(".")[1])
        found[path.stem] = {n.split(".")[0] for n in names} - {path.stem}
    return found


@pytest.mark.parametrize("package", ["litefocus", "analysis", "minildm"])
def test_no_circle_between_modules_of_a_package(package):
    """Issue 30, item 7: quality.evaluate imported protocols, which imports quality, inside a function."""
    arrows = sibling_imports(package)
    circles = []

    def walk(start, node, path):
        for nxt in sorted(arrows.get(node, ())):
            if nxt == start:
                circles.append(" -> ".join([*path, nxt]))
            elif nxt not in path and nxt in arrows:
                walk(start, nxt, [*path, nxt])

    for module in arrows:
        walk(module, module, [module])
    assert circles == []


def test_the_quality_formulas_import_no_project_module():
    assert sibling_imports("analysis")["quality"] == set()
    assert not {"litefocus", "minildm", "analysis"} & imported_packages("analysis")["analysis/quality.py"]
