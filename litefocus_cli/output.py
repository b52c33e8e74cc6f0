"""Output folders of one command run: checked before any work, written whole or not at all.

A run writes into a hidden sibling folder (``.NAME.partial-PID``) and swaps it into place when complete, so ``--out``
never holds files of two runs and an interrupted run leaves the previous results as they were. A folder is replaced
only if a run of this command wrote it (its ``run.json`` says so); partial folders of runs that were killed are
removed by the next run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from litefocus.files import check_writable, read_json, write_json

MANIFEST = "run.json"


def check_out(out: Path, command: str) -> None:
    """Raise ValueError, before any work, unless ``out`` can take this command's results."""
    out = Path(out)
    if out.is_symlink():  # a run replaces the folder whole: it would replace the link, not what it points to
        raise ValueError(f"--out {out} is a symbolic link (to {os.readlink(out)}): give the folder itself, or a new "
                         "path")
    if out.name in ("", ".", ".."):
        raise ValueError(f"--out {out}: give a folder by its name (a run replaces the folder whole, so not "
                         f"'{out}'), e.g. {out / 'results'}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file; give a folder")
    try:
        holds_files = out.is_dir() and any(out.iterdir())
    except PermissionError:
        raise ValueError(f"--out {out}: cannot read that folder; choose one you can read and write") from None
    if holds_files:
        manifest = out / MANIFEST
        written_by = read_json(manifest).get("command") if manifest.is_file() else None
        if written_by != command:
            raise ValueError(f"--out {out} holds files that `litefocus {command}` did not write (no {MANIFEST} of "
                             "it); choose a new or empty folder")
    check_writable(out.parent if out.parent != Path("") else Path("."), "--out", out)  # where the partial goes


@contextmanager
def run_folder(out: Path, command: str, settings: dict) -> Iterator[Path]:
    """``with run_folder(out, "measure", settings) as folder:`` write results into ``folder``; on success they
    replace ``out`` as one set (with ``run.json``: the command and its settings); on any error or interrupt
    ``out`` is untouched and the partial folder is removed."""
    out = Path(out)
    check_out(out, command)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    partial = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-{os.getpid()}-"))
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the results private to their writer
    try:
        yield partial
        write_json(partial / MANIFEST, {**settings, "command": command})
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            out.rename(old)
        partial.rename(out)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _remove_stale_partials(out: Path) -> None:
    """Partial (or replaced) folders of earlier runs into ``out`` whose process is gone (killed)."""
    for kind in ("partial", "replaced"):
        for folder in out.parent.glob(f".{out.name}.{kind}-*"):
            pid = folder.name.split(f".{kind}-")[1].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
