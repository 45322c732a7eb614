"""Atomic writes of text, JSON and CSV files: a reader sees the old file or the new one, never a
part (a temporary file, then a rename); and `open_own`, which opens a file iapo writes without
following a symbolic link (the rename replaces a link at the path itself, never its target)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from iapo.errors import RunDirError



_MODES = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
          "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "r+": os.O_RDWR | os.O_CREAT}


def open_own(path: Path, mode: str = "w", **kwargs):
    """Open one of iapo's own files for writing ("w", "wb", "a") without following a symbolic link
    at `path`: a link there (to a file of someone else's) is a RunDirError, never truncated or
    appended to."""
    try:
        fd = os.open(path, _MODES[mode] | os.O_NOFOLLOW, 0o644)
    except OSError:
        if os.path.islink(path):
            raise RunDirError(f"{path} is a symbolic link; iapo does not follow links when it writes its own "
                              "files: remove it") from None
        raise
    return os.fdopen(fd, mode, **kwargs)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` and rename it over `path`, so a reader (or
    a run killed mid-write) sees the old file or the new one, never part of one. A failure (a
    full disk) removes the temporary file and is a RunDirError."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open_own(tmp, "w", newline="") as f:
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
