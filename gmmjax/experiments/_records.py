"""Run records: `runs.jsonl` appended atomically as each unit finishes, read back for resume.

Every record of a unit carries the unit's id, its fingerprint (what its records depend on, see
`_runner.unit_fingerprint`), the id of the write it came in, its place in that write and the
number of records the write holds. A unit counts as done only when one write of it is complete
and its fingerprint matches the current config: records of edited settings, of a write that
lost lines, or left over from an older version of this format are never read as results.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

# Bumped when the meaning of records changes, so that older records are rerun, not reused.
RECORD_FORMAT = 2
# Fields the runner adds to each record of a unit.
STAMP = ("unit", "fingerprint", "write", "part", "parts")


class FolderBusyError(RuntimeError):
    """Another run holds the output folder."""


@contextlib.contextmanager
def hold_folder(out: Path) -> Iterator[None]:
    """An exclusive lock on `out` for one run (flock on `out/.lock`, not waiting).

    Two runs on one folder would both run every unit and append both copies. The lock belongs
    to the open file, so the kernel drops it when the process exits however it exits: a lock
    file left by a killed run does not block the next one.
    """
    lock = out / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(
                f"another run holds the output folder {out} (lock {lock}); wait for it to "
                "finish, or give this run another output folder (--out)"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def stamp(records: list[dict], unit: str, fingerprint: str) -> list[dict]:
    """`records` of one unit with the fields that let a reader check the write is whole."""
    write = uuid.uuid4().hex
    n = len(records)
    return [
        {**r, "unit": unit, "fingerprint": fingerprint, "write": write, "part": i, "parts": n}
        for i, r in enumerate(records)
    ]


@dataclasses.dataclass
class Units:
    """What runs.jsonl holds, by (unit id, fingerprint).

    complete: the records of the first complete write of each unit (a later complete copy,
        from a concurrent run of an older version or a hand edit, is a duplicate and ignored).
    partial: records of writes that lost lines (their unit is rerun).
    duplicates: complete writes ignored because an earlier one of the same unit exists.
    unstamped: records without the stamp fields (older format; their units are rerun).
    """

    complete: dict[tuple[str, str], list[dict]]
    partial: int = 0
    duplicates: int = 0
    unstamped: int = 0

    def stale(self, current: set[tuple[str, str]]) -> int:
        """Records of complete writes whose unit or fingerprint the current config lacks."""
        return sum(len(rs) for key, rs in self.complete.items() if key not in current)


def collect_units(records: list[dict]) -> Units:
    """Group records into writes and keep, per unit, the first write with all its records."""
    writes: dict[str, list[dict]] = {}
    unstamped = 0
    for r in records:
        if not _stamped(r):
            unstamped += 1
            continue
        writes.setdefault(r["write"], []).append(r)
    units = Units({}, unstamped=unstamped)
    for rs in writes.values():
        if not _is_whole(rs):
            units.partial += len(rs)
            continue
        key = (rs[0]["unit"], rs[0]["fingerprint"])
        if key in units.complete:
            units.duplicates += 1
            continue
        units.complete[key] = sorted(rs, key=lambda r: r["part"])
    return units


def _stamped(r: dict) -> bool:
    """The stamp fields present with their types (a hand-edited line may have lost them)."""
    return (
        all(isinstance(r.get(k), str) for k in ("unit", "fingerprint", "write"))
        and type(r.get("part")) is int
        and type(r.get("parts")) is int
    )


def _is_whole(rs: list[dict]) -> bool:
    """All of one write's records present, once each, agreeing on unit and fingerprint."""
    first = rs[0]
    n = first["parts"]
    return sorted(r["part"] for r in rs) == list(range(n)) and all(
        (r["unit"], r["fingerprint"], r["parts"]) == (first["unit"], first["fingerprint"], n)
        for r in rs
    )


def append_records(path: Path, records: list[dict]) -> None:
    """Append records as JSON lines in one write on an O_APPEND descriptor, then fsync.

    A crash can at worst leave a truncated final line, which `read_records` skips, so a rerun
    redoes exactly the unit that was in flight.
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
    """Every readable line of `runs.jsonl` that holds a JSON object (a torn last line from an
    interrupted run, or a damaged line, is skipped; `collect_units` then finds its unit
    incomplete)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write rows to CSV via a temporary file and an atomic rename (no rows: an empty file, so
    that a summary of earlier settings never stays behind)."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        if rows:
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
