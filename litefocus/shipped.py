"""Where shipped artefacts live (trained weights, the offline evaluator, committed results), read in this one module.

The folder is ``$LITEFOCUS_DATA`` when set, else the checkout's ``data/`` beside the packages. A wheel installs the
code only: from one, point ``LITEFOCUS_DATA`` at a checkout's ``data/`` folder to use what ships there.
"""

from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENT = "LITEFOCUS_DATA"
CHECKOUT_DATA = Path(__file__).resolve().parent.parent / "data"


def data_dir() -> Path:
    """The folder of shipped artefacts: ``$LITEFOCUS_DATA`` (``~`` expanded), else the checkout's ``data/``."""
    override = os.environ.get(ENVIRONMENT, "").strip()
    return Path(override).expanduser() if override else CHECKOUT_DATA


def shipped_path(*parts: str) -> Path:
    """``data_dir() / parts``, whether or not it exists (see :func:`require`)."""
    return data_dir().joinpath(*parts)


def require(path: str | os.PathLike, what: str, made_by: str) -> Path:
    """``path`` if it exists, else a FileNotFoundError that says what is missing, where it was expected and how to get
    it (``made_by``: the command that writes it)."""
    path = Path(path)
    if path.exists():
        return path
    raise FileNotFoundError(
        f"no {what} at {path}: it ships in the repository's data/ folder (a wheel installs no data). Set "
        f"{ENVIRONMENT} to a checkout's data/ folder, or run from a clone of the repository, where {made_by} "
        "remakes it")
