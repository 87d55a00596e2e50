"""Run records: `runs.jsonl` appended atomically as each run finishes, read back for resume."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path


def append_records(path: Path, records: list[dict]) -> None:
    """Append records as JSON lines in one write on an O_APPEND descriptor, then fsync.

    A crash can at worst leave a truncated final line, which `read_records` skips, so a rerun
    redoes exactly the run that was in flight.
    """
    payload = "".join(json.dumps(r, allow_nan=True) + "\n" for r in records).encode()
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                payload = b"\n" + payload  # end a torn line first, so it stays unreadable alone
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: Path) -> list[dict]:
    """Every complete line of `runs.jsonl` (a torn last line from an interrupted run is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write rows to CSV via a temporary file and an atomic rename."""
    if not rows:
        return
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


class Progress:
    """A one-line text progress bar on stderr (no dependency)."""

    def __init__(self, total: int, label: str):
        self.total, self.done, self.label = total, 0, label
        self._draw()

    def advance(self, what: str = "") -> None:
        self.done += 1
        self._draw(what)

    def _draw(self, what: str = "") -> None:
        if not sys.stderr.isatty():  # a log file gets one plain line per finished run
            if self.done:
                sys.stderr.write(f"{self.label}: {self.done}/{self.total} {what}\n")
            return
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        end = "\n" if self.done >= self.total else ""
        sys.stderr.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {what:40.40s}{end}")
        sys.stderr.flush()
