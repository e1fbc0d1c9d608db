"""Named label sets for zero-shot classification, persisted as one JSON file each.

Stored under `data_dir/labelsets/<name>.json` (written to a temp file, fsynced, renamed) so they
survive restarts and a crash never leaves half a file. Names follow the collection-name rules,
which also keeps them safe as file names.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ErrorCode, OmnivecError
from ..index.store import InvalidRequest, utc_now_iso, validate_collection_name
from .zero_shot import check_labels, check_templates


@dataclass
class LabelSet:
    name: str
    labels: list[str]
    templates: list[str] | None = None
    description: str = ""
    updated_at: str = field(default_factory=utc_now_iso)


def _check_name(name: str) -> str:
    try:
        return validate_collection_name(name)
    except InvalidRequest as exc:
        raise OmnivecError(ErrorCode.INVALID_REQUEST, str(exc).replace("collection name", "label set name")) from exc


class LabelSetStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path:
        return self.root / f"{_check_name(name)}.json"

    def put(self, name: str, labels: list[str], templates: list[str] | None = None, description: str = "") -> LabelSet:
        """Create or replace a label set."""
        labelset = LabelSet(name=_check_name(name), labels=check_labels(labels), templates=check_templates(templates), description=description)
        path = self._path(name)
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(asdict(labelset), f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return labelset

    def get(self, name: str) -> LabelSet:
        path = self._path(name)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OmnivecError(ErrorCode.LABELSET_NOT_FOUND, f"label set {name!r} does not exist; create it with PUT /v1/labelsets/{name}") from None
        return LabelSet(**{k: raw[k] for k in LabelSet.__dataclass_fields__ if k in raw})

    def delete(self, name: str) -> None:
        path = self._path(name)
        with self._lock:
            try:
                path.unlink()
            except FileNotFoundError:
                raise OmnivecError(ErrorCode.LABELSET_NOT_FOUND, f"label set {name!r} does not exist") from None

    def list(self) -> list[LabelSet]:
        if not self.root.is_dir():
            return []
        return [self.get(p.stem) for p in sorted(self.root.glob("*.json"))]
