"""Atomic writes of text, JSON and CSV files: a reader sees the old file or the new one, never a
part (a temporary file, then a rename)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from iapo.errors import RunDirError



def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` and rename it over `path`, so a reader (or
    a run killed mid-write) sees the old file or the new one, never part of one. A failure (a
    full disk) removes the temporary file and is a RunDirError."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: no half-written file left behind, one line said
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_csv_atomic(path: Path, header: list[str], rows) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, out.getvalue())
