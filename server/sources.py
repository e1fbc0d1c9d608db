"""What `omnivec index` reads: image and audio files (a file, a directory, a glob) or a CSV/JSONL manifest.

Manifest rows have `path` (an image or audio file, relative to the manifest's folder) or `text`, an
optional `id`, and any other columns, which become the item's payload (CSV cells that look like
numbers or booleans are stored as such, so range and match filters work on them; a JSONL row may
also carry a `payload` object). File items also get `path` in their payload, so search results
say which file they are. A file's modality comes from its extension (`media.AUDIO_SUFFIXES`;
anything else is sent as an image, whose decoder then names the problem).

`manifest_rows` is the one CSV/JSONL manifest reader: the CLI's `omnivec index`, the server's demo
collection and the fine-tune data readers all read manifests through it. Framework-free.
"""

from __future__ import annotations

import csv
import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .media import AUDIO_SUFFIXES, IMAGE_SUFFIXES, MEDIA_SUFFIXES, suffix_modality

MANIFEST_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
RESERVED_COLUMNS = ("path", "text", "id", "payload")


class SourceError(ValueError):
    """The source cannot be read; the message names the file and line."""


@dataclass
class SourceItem:
    label: str  # how progress and errors name it: the path, or "file.csv:12"
    text: str | None = None
    path: Path | None = None
    id: str | None = None
    payload: dict = field(default_factory=dict)

    @property
    def modality(self) -> str:
        """text, audio (by extension) or image."""
        if self.text is not None:
            return "text"
        return suffix_modality(self.path.name if self.path else None) or "image"


def _cell(value: str) -> Any:
    """CSV cell -> int, float, bool or the string itself."""
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _row_item(row: dict, base: Path, where: str) -> SourceItem:
    path, text = row.get("path") or None, row.get("text") or None
    if bool(path) == bool(text):
        raise SourceError(f"{where}: a row needs exactly one of `path` (an image or audio file) or `text`")
    payload = dict(row["payload"]) if isinstance(row.get("payload"), dict) else {}
    payload.update({k: v for k, v in row.items() if k not in RESERVED_COLUMNS and v not in (None, "")})
    if path:
        payload.setdefault("path", str(path))
        return SourceItem(label=where, path=(base / str(path)), id=row.get("id") or None, payload=payload)
    return SourceItem(label=where, text=str(text), id=row.get("id") or None, payload=payload)


def manifest_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, row) for every row of a CSV or JSONL manifest: `where` is "file.csv:12"; CSV cells stay strings."""
    if MANIFEST_SUFFIXES.get(path.suffix.lower()) == "jsonl":
        with open(path, encoding="utf-8") as f:
            for line, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise SourceError(f"{path.name}:{line} is not valid JSON ({exc})") from exc
                if not isinstance(row, dict):
                    raise SourceError(f"{path.name}:{line} must be a JSON object")
                yield f"{path.name}:{line}", row
        return
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            yield f"{path.name}:{line}", {k: v for k, v in row.items() if k is not None}


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def _manifest_items(path: Path) -> Iterator[SourceItem]:
    is_csv = MANIFEST_SUFFIXES[path.suffix.lower()] == "csv"
    if is_csv and not {"path", "text"} & set(_csv_header(path)):
        raise SourceError(f"{path}: the header needs a `path` or `text` column (plus optional `id` and payload columns)")
    for where, row in manifest_rows(path):
        if is_csv:  # cells that look like numbers or booleans become them, so filters work on them
            row = {k: (_cell(v) if k not in RESERVED_COLUMNS and isinstance(v, str) else v) for k, v in row.items()}
        yield _row_item(row, path.parent, where)


def _file_item(path: Path) -> SourceItem:
    return SourceItem(label=str(path), path=path, payload={"path": str(path)})


def read_source(source: str) -> list[SourceItem]:
    """Every item of a file, directory (recursive), glob, CSV or JSONL, in a stable order."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return list(_manifest_items(path))
    return [_file_item(p) for p in _source_files(source)]


def scan_source(source: str) -> tuple[int, Callable[[], Iterator[SourceItem]]]:
    """How many items a source holds, and a way to read them again one at a time (a manifest of a
    million rows is checked row by row once, then streamed, never held as a list)."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        count = sum(1 for _ in _manifest_items(path))  # every row checked before anything is sent
        return count, lambda: _manifest_items(path)
    files = _source_files(source)
    return len(files), lambda: (_file_item(p) for p in files)


def _source_files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
    else:
        files = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file() and Path(p).suffix.lower() in MEDIA_SUFFIXES)
    if not files:
        raise SourceError(
            f"{source}: no image files ({', '.join(IMAGE_SUFFIXES)}) or audio files ({', '.join(AUDIO_SUFFIXES)}) found, "
            "and it is not a CSV/JSONL file"
        )
    return files
