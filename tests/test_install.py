"""The wheel, installed into a fresh virtual environment outside the checkout: the library imports, the command runs on
the tiny model, the studies stay out, and the embedded default says plainly where its weights are expected."""

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("litefocus", "analysis", "minildm", "litefocus_cli", "studies")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(python, litefocus command, a folder outside the checkout)``: the wheel built from a copy of the sources (no
    data/, so nothing shipped can leak in) and installed without dependencies into a new venv that sees this
    environment's dependencies but not its editable install of the checkout."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    target_site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                      check=True, capture_output=True, text=True).stdout.strip())
    # a path line of a .pth file is added as it is: the .pth files inside it (the editable finder) are not run
    (target_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", str(source)], check=True, cwd=work)
    outside = work / "elsewhere"
    outside.mkdir()
    return python, venv / "bin" / "litefocus", outside


def run(command, cwd, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LITEFOCUS_DATA")} | env
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, env=environment)


def test_the_library_imports_from_the_wheel_and_the_studies_stay_out(installed):
    python, _, outside = installed
    done = run([python, "-c", "import litefocus, analysis, minildm, litefocus_cli; print(litefocus.__file__)"],
               outside)
    assert done.returncode == 0, done.stderr
    assert "site-packages" in done.stdout and str(ROOT) not in done.stdout
    assert "No module named 'studies'" in run([python, "-c", "import studies"], outside).stderr


def test_measure_on_the_tiny_model_runs_from_the_wheel(installed):
    _, litefocus, outside = installed
    done = run([litefocus, "measure", "--model", "tiny", "--seconds", "1.28", "--steps", "1", "--queries", "2",
                "--blocks", "down_blocks.1", "--out", "m"], outside)
    assert done.returncode == 0, done.stderr
    assert (outside / "m" / "sparsity.nc").is_file() and (outside / "m" / "blocks.csv").is_file()


def test_shipped_artefacts_are_missing_plainly_or_found_through_litefocus_data(installed):
    python, litefocus, outside = installed
    done = run([litefocus, "measure", "--out", "d"], outside)  # the embedded default: no weights in a wheel
    assert done.returncode == 2 and not (outside / "d").exists()
    assert "no embedded default model" in done.stderr and "LITEFOCUS_DATA" in done.stderr
    budget = run([litefocus, "measure", "--model", "tiny", "--budget", "KAD=0", "--out", "b"], outside)
    assert budget.returncode == 2 and "no attention-share table at" in budget.stderr
    found = run([python, "-c", "from analysis.evaluator import OFFLINE_PATH; from minildm import DEFAULT_PATH; "
                               "print(OFFLINE_PATH); print(DEFAULT_PATH)"], outside, LITEFOCUS_DATA=str(ROOT / "data"))
    assert found.stdout.split() == [str(ROOT / "data" / "evaluator"), str(ROOT / "data" / "minildm3")]
