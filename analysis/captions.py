"""Caption files: AudioCaps' CSV or one caption a line (what a sweep generates from), and the captions of a folder
of generated files (what ``litefocus evaluate`` scores with CLAP).

Files are read as UTF-8 with an optional byte-order mark (``utf-8-sig``: a BOM is never part of the first caption);
a CSV is parsed by :mod:`csv` over the whole text, so a quoted field may hold a newline. Errors name the file, and
the line or the byte that is wrong.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

AUDIOCAPS_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
FILE_COLUMNS = ("file", "caption")


@dataclass(frozen=True)
class Caption:
    """One caption: ``id`` (AudioCaps' audiocap_id, or the line number), the text, and ``audio``: the name of its
    reference clip (AudioCaps' youtube_id; empty for a caption a line), which pairs clips for KL."""

    id: str
    text: str
    audio: str = ""


def read_text(path: str | os.PathLike, argument: str = "--captions") -> str:
    """The text of a caption file (UTF-8, a leading BOM dropped); an error names the file and the first bad byte."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{argument} {path}: no such file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{argument} {path} is not UTF-8: byte 0x{data[error.start]:02x} at offset {error.start} "
                         "(save it as UTF-8)") from None


def text_lines(text: str) -> list[str]:
    """The lines of ``text``, split at ``\n``, ``\r\n`` and ``\r`` only (``str.splitlines`` also splits at form feed,
    vertical tab, ``\x1c``-``\x1e``, ``\x85``, U+2028 and U+2029, which may stand inside a caption)."""
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def is_csv(path: Path, text: str, first_column: str) -> bool:
    first = text_lines(text)[0] if text.strip() else ""
    return path.suffix.lower() == ".csv" or first.replace(" ", "").startswith(first_column + ",")


def read_captions(path: str | os.PathLike) -> list[Caption]:
    """Captions from AudioCaps' CSV layout (``audiocap_id, youtube_id, start_time, caption``) or a text file with one
    caption a line (blank lines skipped; ids are line numbers)."""
    path = Path(path)
    text = read_text(path)
    if is_csv(path, text, "audiocap_id"):
        return _audiocaps(path, text)
    captions = [Caption(str(n), line.strip()) for n, line in enumerate(text_lines(text), 1) if line.strip()]
    if not captions:
        raise ValueError(f"--captions {path} holds no captions (one caption a line, or AudioCaps' CSV)")
    return captions


def _csv_rows(path: Path, text: str, columns: tuple[str, ...]):
    """``(line, {column: value})`` of each non-blank record (the line where it starts) after a header that has
    ``columns``."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"--captions {path}: a CSV needs the columns {', '.join(columns)}; line 1 has "
                         f"{', '.join(header) or 'nothing'}")
    line = reader.line_num + 1
    for row in reader:
        start, line = line, reader.line_num + 1
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"--captions {path}, line {start}: {len(row)} fields where the header has {len(header)}")
        yield start, {c: row[header.index(c)].strip() for c in header}


def _audiocaps(path: Path, text: str) -> list[Caption]:
    captions, seen = [], set()
    for line, row in _csv_rows(path, text, AUDIOCAPS_COLUMNS):
        if not row["audiocap_id"] or not row["caption"]:
            raise ValueError(f"--captions {path}, line {line}: empty audiocap_id or caption")
        if row["audiocap_id"] in seen:
            raise ValueError(f"--captions {path}, line {line}: audiocap_id {row['audiocap_id']} appears twice")
        seen.add(row["audiocap_id"])
        captions.append(Caption(row["audiocap_id"], row["caption"], row["youtube_id"]))
    if not captions:
        raise ValueError(f"--captions {path} holds a header and no captions")
    return captions


def captions_of_files(path: str | os.PathLike, names: list[str]) -> list[str]:
    """One caption per generated file stem in ``names``, from a CSV (``file``, ``caption``; the file by stem or
    name) or a text file with one caption a line, in the sorted order of the files."""
    path = Path(path)
    text = read_text(path)
    if is_csv(path, text, "file"):
        by_file = {Path(row["file"]).stem: row["caption"] for _, row in _csv_rows(path, text, FILE_COLUMNS)}
        missing = [n for n in names if n not in by_file]
        if missing:
            raise ValueError(f"--captions {path}: no caption for {len(missing)} generated files, e.g. {missing[:3]}")
        return [by_file[n] for n in names]
    lines = [line.strip() for line in text_lines(text) if line.strip()]
    if len(lines) != len(names):
        raise ValueError(f"--captions {path}: {len(lines)} captions for {len(names)} generated files "
                         "(one caption a line, in the sorted order of the files)")
    return lines
