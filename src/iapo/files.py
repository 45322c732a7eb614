"""Small file helpers shared by the run, sweep and report writers."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` and rename it over `path`, so a reader (or
    a run killed mid-write) sees the old file or the new one, never part of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_csv_atomic(path: Path, header: list[str], rows) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, out.getvalue())


def show_value(value) -> str:
    """A config value as flags and names spell it: tuples as 256x256."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
