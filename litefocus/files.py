"""Atomic file writes: a result file is either complete or absent, never half written.

Internal helpers of this project's layers (the method, the models, the analysis, the studies and the command line);
not part of the public API, which is what ``litefocus``, ``analysis`` and ``minildm`` export."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def check_writable(folder: str | os.PathLike, argument: str, shown: str | os.PathLike | None = None) -> None:
    """An error naming ``argument`` (and ``shown``, default ``folder``) unless files can be made in ``folder`` (or,
    when it does not exist yet, in its nearest existing ancestor): tried by making and removing a temporary folder
    there, which root's ``os.access`` and read-only mounts such as ``/proc`` answer wrongly."""
    folder = Path(folder).absolute()
    shown = folder if shown is None else shown
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{argument} {shown}: {existing} is a file, so no folder can be made under it")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".litefocus-write-test-"))
    except OSError as error:
        raise ValueError(f"{argument} {shown}: cannot write in {existing} ({error.strerror or error}); choose "
                         "another folder") from None


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make results private to their writer
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | os.PathLike):
    """A JSON file's content, or a ValueError that names the file when it is truncated or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it may be truncated: regenerate it with the command "
                         "that wrote it, or restore it with git checkout") from error


def write_csv(path: str | os.PathLike, table) -> Path:
    """A ``pandas.DataFrame`` (or anything ``pd.DataFrame`` takes) as CSV without the index, atomically."""
    import pandas as pd

    table = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    return write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))


def read_csv(path: str | os.PathLike):
    """A CSV as a ``pandas.DataFrame``, every float exactly as written (Python's parser: pandas' fast one may move a
    value by one unit in the last place, and a table read and written back would then change committed numbers)."""
    import pandas as pd

    return pd.read_csv(path, engine="python")


def write_json(path: str | os.PathLike, data) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def save_figure(figure, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """``figure.savefig`` to ``path``, atomically (the format from the path's suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return write_atomic(path, lambda tmp: figure.savefig(tmp, format=fmt, **savefig_kwargs))


def write_wav(path: str | os.PathLike, audio, sampling_rate: int) -> Path:
    """``audio``: 1-D float array in [-1, 1] (clipped), written as 32-bit float WAV: the samples exactly, also those
    too quiet for 16-bit PCM (a random-weight model's output peaks near 1e-7)."""
    import numpy as np
    from scipy.io import wavfile

    samples = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return write_atomic(path, lambda tmp: wavfile.write(tmp, sampling_rate, samples))
